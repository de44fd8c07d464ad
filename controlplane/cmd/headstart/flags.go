package main

import (
	"flag"

	"go.temporal.io/sdk/client"

	"github.com/headstart-dev/headstart/controlplane/config"
)

// fileFlags are the flags of the commands that read headstart worker's
// configuration: -config, and the connection's -address, -namespace and
// -profile, which override the file.
type fileFlags struct {
	config, address, namespace, profile *string
}

func addFileFlags(fs *flag.FlagSet, configUsage string) *fileFlags {
	return &fileFlags{
		config:    fs.String("config", "", configUsage),
		address:   fs.String("address", client.DefaultHostPort, "Temporal frontend host:port (overrides temporal.address and TEMPORAL_ADDRESS)"),
		namespace: fs.String("namespace", client.DefaultNamespace, "Temporal namespace (overrides temporal.namespace and TEMPORAL_NAMESPACE)"),
		profile:   fs.String("profile", "", "profile of Temporal's client configuration file (overrides temporal.profile and TEMPORAL_PROFILE)"),
	}
}

// load reads the configuration file (without -config, the defaults) and
// applies the flags that were set: the connection's here, the command's own
// through set, by flag.
func (ff *fileFlags) load(fs *flag.FlagSet, set func(f *flag.Flag, file *config.File)) (*config.File, error) {
	file, err := config.Parse("flags", nil)
	if *ff.config != "" {
		file, err = config.Load(*ff.config)
	}
	if err != nil {
		return nil, err
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "address":
			file.Temporal.Address = *ff.address
		case "namespace":
			file.Temporal.Namespace = *ff.namespace
		case "profile":
			file.Temporal.Profile = *ff.profile
		default:
			if set != nil {
				set(f, file)
			}
		}
	})
	return file, nil
}
