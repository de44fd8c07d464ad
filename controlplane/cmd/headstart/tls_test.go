package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/headstart-dev/headstart/controlplane/config"
	"github.com/headstart-dev/headstart/internal/temporaltest"
)

func TestMain(m *testing.M) { os.Exit(temporaltest.Main(m)) }

// noTemporalEnvironment clears what Temporal's client configuration reads
// from the environment, so a test sees only what it sets.
func noTemporalEnvironment(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "TEMPORAL_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	t.Setenv("TEMPORAL_CONFIG_FILE", filepath.Join(t.TempDir(), "none.toml"))
}

func dial(t *testing.T, tc config.Temporal) error {
	t.Helper()
	opts, err := tc.ClientOptions()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := client.DialContext(ctx, opts)
	if err != nil {
		return config.ExplainDial(opts.HostPort, err)
	}
	defer c.Close()
	_, err = c.CheckHealth(ctx, &client.CheckHealthRequest{})
	return err
}

// TestTheControlWorkerConnectsOverMutualTLS: through a real TLS endpoint
// that requires client certificates, the connection is configured as
// Temporal's tools configure it — TEMPORAL_* variables, a profile of
// Temporal's client configuration file, or the config file's temporal.tls
// — and a wrong CA or a missing client certificate is refused with what to
// do about it, before anything starts.
func TestTheControlWorkerConnectsOverMutualTLS(t *testing.T) {
	srv := temporaltest.Shared(t)
	front := temporaltest.StartTLSFront(t, srv.HostPort(), true)

	t.Run("from TEMPORAL_ variables", func(t *testing.T) {
		noTemporalEnvironment(t)
		t.Setenv("TEMPORAL_ADDRESS", front.HostPort)
		t.Setenv("TEMPORAL_TLS_CLIENT_CERT_PATH", front.ClientCert)
		t.Setenv("TEMPORAL_TLS_CLIENT_KEY_PATH", front.ClientKey)
		t.Setenv("TEMPORAL_TLS_SERVER_CA_CERT_PATH", front.CA)
		t.Setenv("TEMPORAL_TLS_SERVER_NAME", front.ServerName)
		require.NoError(t, dial(t, config.Temporal{}))
	})
	t.Run("from a profile of Temporal's client configuration file", func(t *testing.T) {
		noTemporalEnvironment(t)
		file := filepath.Join(t.TempDir(), "temporal.toml")
		require.NoError(t, os.WriteFile(file, fmt.Appendf(nil, `
[profile.secured]
address = %q
[profile.secured.tls]
client_cert_path = %q
client_key_path = %q
server_ca_cert_path = %q
server_name = %q
`, front.HostPort, front.ClientCert, front.ClientKey, front.CA, front.ServerName), 0o600))
		require.NoError(t, dial(t, config.Temporal{ConfigFile: file, Profile: "secured"}))
	})
	secured := fmt.Sprintf("temporal:\n  address: %s\n  tls: {cert: %s, key: %s, ca: %s, server_name: %s}\n",
		front.HostPort, front.ClientCert, front.ClientKey, front.CA, front.ServerName)
	t.Run("from the config file", func(t *testing.T) {
		noTemporalEnvironment(t)
		f, err := config.Parse("secured.yaml", []byte(secured))
		require.NoError(t, err)
		require.NoError(t, dial(t, f.Temporal))
	})
	t.Run("a wrong CA is refused, and the binary says what to set", func(t *testing.T) {
		noTemporalEnvironment(t)
		file := filepath.Join(t.TempDir(), "wrong-ca.yaml")
		require.NoError(t, os.WriteFile(file, []byte(strings.Replace(secured, front.CA, front.OtherCA, 1)), 0o600))
		var out, errOut bytes.Buffer
		code := run([]string{"worker", "--config", file}, &out, &errOut)
		require.Equal(t, 1, code, "stdout:\n%s\nstderr:\n%s", out.String(), errOut.String())
		require.Contains(t, errOut.String(), "headstart worker: dial "+front.HostPort+": the server's certificate is not signed by the CA the client trusts: set temporal.tls.ca")
		require.Contains(t, errOut.String(), "certificate signed by unknown authority")
		require.NotContains(t, out.String(), "started", "nothing started")
	})
	t.Run("no client certificate is refused", func(t *testing.T) {
		noTemporalEnvironment(t)
		err := dial(t, config.Temporal{Address: front.HostPort, TLS: &config.TLS{CA: front.CA, ServerName: front.ServerName}})
		require.Error(t, err)
		require.Contains(t, err.Error(), "asks for a client certificate it trusts (mutual TLS)")
	})
}

// TestTheConnectionIsLayeredAsTemporalsToolsLayerIt: the profile, then the
// TEMPORAL_ variables, then the config file's fields, then the defaults.
func TestTheConnectionIsLayeredAsTemporalsToolsLayerIt(t *testing.T) {
	noTemporalEnvironment(t)
	file := filepath.Join(t.TempDir(), "temporal.toml")
	require.NoError(t, os.WriteFile(file, []byte("[profile.default]\naddress = \"profile:7233\"\nnamespace = \"from-profile\"\n"), 0o600))
	t.Setenv("TEMPORAL_CONFIG_FILE", file)
	opts, err := config.Temporal{}.ClientOptions()
	require.NoError(t, err)
	require.Equal(t, "profile:7233", opts.HostPort)
	require.Equal(t, "from-profile", opts.Namespace)
	require.Nil(t, opts.ConnectionOptions.TLS)

	t.Setenv("TEMPORAL_NAMESPACE", "from-env")
	opts, err = config.Temporal{}.ClientOptions()
	require.NoError(t, err)
	require.Equal(t, "from-env", opts.Namespace, "the environment over the profile")

	opts, err = config.Temporal{Namespace: "from-file", APIKey: "k"}.ClientOptions()
	require.NoError(t, err)
	require.Equal(t, "from-file", opts.Namespace, "the config file over the environment")
	require.NotNil(t, opts.ConnectionOptions.TLS, "an API key turns TLS on")
	require.NotNil(t, opts.Credentials)

	t.Setenv("TEMPORAL_CONFIG_FILE", filepath.Join(t.TempDir(), "none.toml"))
	t.Setenv("TEMPORAL_NAMESPACE", "")
	os.Unsetenv("TEMPORAL_NAMESPACE")
	opts, err = config.Temporal{}.ClientOptions()
	require.NoError(t, err)
	require.Equal(t, client.DefaultHostPort, opts.HostPort)
	require.Equal(t, client.DefaultNamespace, opts.Namespace)

	_, err = config.Temporal{Profile: "missing"}.ClientOptions()
	require.ErrorIs(t, err, config.ErrTemporalProfile)
}
