package config

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/contrib/envconfig"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrTemporalProfile is wrapped by errors loading Temporal's client
// configuration (its file, profile or TEMPORAL_* variables).
var ErrTemporalProfile = errors.New("temporal client configuration")

// ClientOptions are the Temporal client's options: Temporal's client
// configuration profile (Profile of ConfigFile), with the TEMPORAL_*
// environment variables over it, and the fields of t that are set over
// those; localhost:7233 and namespace "default" where nothing says.
func (t Temporal) ClientOptions() (client.Options, error) {
	prof, err := envconfig.LoadClientConfigProfile(envconfig.LoadClientConfigProfileOptions{
		ConfigFilePath: t.ConfigFile, ConfigFileProfile: t.Profile,
	})
	if err != nil {
		return client.Options{}, fmt.Errorf("%w: %w", ErrTemporalProfile, err)
	}
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&prof.Address, t.Address)
	set(&prof.Namespace, t.Namespace)
	set(&prof.APIKey, t.APIKey)
	if t.TLS != nil {
		if prof.TLS == nil {
			prof.TLS = &envconfig.ClientConfigTLS{}
		}
		if t.TLS.Cert != "" {
			prof.TLS.ClientCertPath, prof.TLS.ClientCertData = t.TLS.Cert, nil
			prof.TLS.ClientKeyPath, prof.TLS.ClientKeyData = t.TLS.Key, nil
		}
		if t.TLS.CA != "" {
			prof.TLS.ServerCACertPath, prof.TLS.ServerCACertData = t.TLS.CA, nil
		}
		set(&prof.TLS.ServerName, t.TLS.ServerName)
		prof.TLS.Disabled = prof.TLS.Disabled || t.TLS.Disabled
	}
	if prof.Address == "" {
		prof.Address = client.DefaultHostPort
	}
	if prof.Namespace == "" {
		prof.Namespace = client.DefaultNamespace
	}
	opts, err := prof.ToClientOptions(envconfig.ToClientOptionsRequest{})
	if err != nil {
		return client.Options{}, fmt.Errorf("%w: %w", ErrTemporalProfile, err)
	}
	return opts, nil
}

// ExplainDial adds what a person can do about the errors a secured
// connection fails with to err, a failed dial of address.
func ExplainDial(address string, err error) error {
	if hint := dialHint(err); hint != "" {
		return fmt.Errorf("dial %s: %s: %w", address, hint, err)
	}
	return fmt.Errorf("dial %s: %w", address, err)
}

// Retryable reports whether err, from dialing or first calling the
// server, may pass by itself: the server is unreachable, overloaded or too
// slow to answer (one restarting), and not misconfigured (TLS, credentials,
// an unknown namespace), which no retry fixes.
func Retryable(err error) bool {
	if err == nil || dialHint(err) != "" {
		return false
	}
	var (
		unavailable *serviceerror.Unavailable
		deadline    *serviceerror.DeadlineExceeded
		exhausted   *serviceerror.ResourceExhausted
	)
	if errors.As(err, &unavailable) || errors.As(err, &deadline) || errors.As(err, &exhausted) ||
		errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	if s, ok := status.FromError(err); ok {
		switch s.Code() {
		case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted:
			return true
		}
	}
	return false
}

func dialHint(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "certificate signed by unknown authority"):
		return "the server's certificate is not signed by the CA the client trusts: set temporal.tls.ca (or TEMPORAL_TLS_SERVER_CA_CERT_PATH) to the CA that signed it"
	case strings.Contains(msg, "certificate is valid for"), strings.Contains(msg, "doesn't contain any IP SANs"):
		return "the server's certificate names another host: set temporal.tls.server_name (or TEMPORAL_TLS_SERVER_NAME) to a name it is valid for"
	case strings.Contains(msg, "certificate required"), strings.Contains(msg, "bad certificate"), strings.Contains(msg, "handshake failure"):
		return "the server asks for a client certificate it trusts (mutual TLS): set temporal.tls.cert and temporal.tls.key (or TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH)"
	case strings.Contains(msg, "first record does not look like a TLS handshake"), strings.Contains(msg, "http2: frame too large"):
		return "TLS is on at one end only: check temporal.tls / TEMPORAL_TLS against the server"
	}
	return ""
}
