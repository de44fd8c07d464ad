package config

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"go.temporal.io/api/serviceerror"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestRetryableTellsAServerThatIsAwayFromOneThatRefuses: a server that is
// down, overloaded or slow is worth waiting for; one that refuses the
// connection's settings is not.
func TestRetryableTellsAServerThatIsAwayFromOneThatRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", status.Error(codes.Unavailable, "connection error: dial tcp 127.0.0.1:7233: connect: connection refused"), true},
		{"restarting, as the SDK wraps it", fmt.Errorf("failed reaching server: %w", serviceerror.NewUnavailable("shutting down")), true},
		{"too slow", fmt.Errorf("failed reaching server: %w", context.DeadlineExceeded), true},
		{"slow, as a service error", serviceerror.NewDeadlineExceeded("deadline"), true},
		{"overloaded", serviceerror.NewResourceExhausted(0, "busy"), true},
		{"an unknown CA", status.Error(codes.Unavailable, "authentication handshake failed: tls: failed to verify certificate: x509: certificate signed by unknown authority"), false},
		{"TLS at one end only", status.Error(codes.Unavailable, "first record does not look like a TLS handshake"), false},
		{"an unknown namespace", serviceerror.NewNamespaceNotFound("nowhere"), false},
		{"no permission", serviceerror.NewPermissionDenied("no", ""), false},
		{"bad credentials", status.Error(codes.Unauthenticated, "bad API key"), false},
		{"interrupted", context.Canceled, false},
		{"anything else", errors.New("boom"), false},
		{"no error", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Retryable(tc.err); got != tc.want {
				t.Fatalf("Retryable(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}
