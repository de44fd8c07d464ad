// Package temporaltest starts a real Temporal dev server (the pinned Temporal
// CLI) on 127.0.0.1 with free ports and an in-memory database, for tests.
//
// One server per test package, started by the first test that needs it, is
// the intended use:
//
//	func TestMain(m *testing.M) { os.Exit(temporaltest.Main(m)) }
//
//	func TestPipeline(t *testing.T) {
//		c := temporaltest.Shared(t).Client()
//		...
//	}
//
// The CLI binary is $HEADSTART_TEMPORAL_CLI when set (the Makefile sets it);
// otherwise scripts/build-temporal.sh is run, which returns the cached binary
// or builds it. A missing binary is therefore built, never skipped.
package temporaltest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/headstart-dev/headstart/internal/testproc"
)

// EnvCLI names the environment variable holding the Temporal CLI's path.
const EnvCLI = "HEADSTART_TEMPORAL_CLI"

// Options configure a dev server. The zero value is a headless server in the
// "default" namespace.
type Options struct {
	// Namespace to register and connect to. If not set, "default".
	Namespace string
	// SearchAttributes to register on start.
	SearchAttributes temporal.SearchAttributes
	// Logger for the clients the server hands out. If not set, warnings and
	// errors go to stderr.
	Logger log.Logger
	// StartTimeout bounds building (if needed) and starting. If not set, 15 minutes,
	// enough to build the CLI cold.
	StartTimeout time.Duration
	// UI serves the Web UI on a free port of 127.0.0.1 (Server.UIAddress).
	UI bool
	// HostPort the frontend listens on. If not set, a free port of 127.0.0.1.
	// A server restarted on the same HostPort and DBFilename carries on
	// where it stopped, and its clients reconnect.
	HostPort string
	// DBFilename keeps the server's state in this SQLite file. If not set,
	// in memory.
	DBFilename string
}

// Server is a running dev server.
type Server struct {
	dev       *testsuite.DevServer
	ui        string // host:port of the Web UI, if served
	namespace string
	logger    log.Logger
	output    *testproc.Log
}

// Start builds the CLI if needed and starts a dev server on 127.0.0.1, by
// default on a free port (the SDK picks it) with an in-memory database.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.Namespace == "" {
		opts.Namespace = "default"
	}
	if opts.Logger == nil {
		opts.Logger = log.NewStructuredLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 15 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()
	cli, err := CLIPath(ctx)
	if err != nil {
		return nil, err
	}
	out := &testproc.Log{}
	var uiPort string
	if opts.UI {
		p, err := testproc.Port()
		if err != nil {
			return nil, err
		}
		uiPort = fmt.Sprint(p)
	}
	// The CLI picks its other ports (HTTP API, metrics) free when it starts,
	// and a busy machine's other tests may take one before it binds: a
	// start that fails is tried again, up to three times.
	var dev *testsuite.DevServer
	for attempt := 1; ; attempt++ {
		dev, err = startDev(ctx, cli, opts, uiPort, out)
		if err == nil || attempt == 3 || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("start temporal dev server %s: %w\n%s", cli, err, out.Tail(4096))
	}
	s := &Server{dev: dev, namespace: opts.Namespace, logger: opts.Logger, output: out}
	if opts.UI {
		s.ui = "127.0.0.1:" + uiPort
	}
	return s, nil
}

func startDev(ctx context.Context, cli string, opts Options, uiPort string, out *testproc.Log) (*testsuite.DevServer, error) {
	return testsuite.StartDevServer(ctx, testsuite.DevServerOptions{
		EnableUI:         opts.UI,
		UIPort:           uiPort,
		ExistingPath:     cli,
		ClientOptions:    &client.Options{HostPort: opts.HostPort, Namespace: opts.Namespace, Logger: opts.Logger},
		DBFilename:       opts.DBFilename,
		SearchAttributes: opts.SearchAttributes,
		LogLevel:         "error",
		Stdout:           out,
		Stderr:           out,
	})
}

// UIAddress is the Web UI's host:port ("" unless Options.UI).
func (s *Server) UIAddress() string { return s.ui }

// HostPort is the frontend's gRPC address.
func (s *Server) HostPort() string { return s.dev.FrontendHostPort() }

// Namespace is the namespace the server registered.
func (s *Server) Namespace() string { return s.namespace }

// Client is a client connected to the server, shared by its users; do not close it.
func (s *Server) Client() client.Client { return s.dev.Client() }

// NewClient dials a new client to the server; the caller closes it. HostPort,
// Namespace and Logger are filled in when not set.
func (s *Server) NewClient(ctx context.Context, opts client.Options) (client.Client, error) {
	if opts.HostPort == "" {
		opts.HostPort = s.HostPort()
	}
	if opts.Namespace == "" {
		opts.Namespace = s.namespace
	}
	if opts.Logger == nil {
		opts.Logger = s.logger
	}
	return client.DialContext(ctx, opts)
}

// Stop closes the shared client and stops the server, waiting for it to exit.
func (s *Server) Stop() error {
	s.dev.Client().Close()
	if err := s.dev.Stop(); err != nil && !strings.Contains(err.Error(), "signal: interrupt") {
		return fmt.Errorf("stop temporal dev server: %w\n%s", err, s.output.Tail(4096))
	}
	return nil
}

var shared struct {
	once   sync.Once
	server *Server
	err    error
}

// Shared returns the package's dev server, starting it on first use; a server
// that cannot start fails the test. Main stops it after the package's tests.
func Shared(t testing.TB) *Server {
	t.Helper()
	shared.once.Do(func() { shared.server, shared.err = Start(context.Background(), Options{}) })
	if shared.err != nil {
		t.Fatalf("temporaltest: %v", shared.err)
	}
	return shared.server
}

// Main runs the package's tests and then stops the server Shared started, if
// any. It returns the exit code for os.Exit.
func Main(m *testing.M) int {
	code := m.Run()
	if shared.server != nil {
		if err := shared.server.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "temporaltest:", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// CLIPath returns the Temporal CLI binary: $HEADSTART_TEMPORAL_CLI when set,
// else what scripts/build-temporal.sh prints (building it when not cached).
func CLIPath(ctx context.Context) (string, error) {
	if p := os.Getenv(EnvCLI); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w (unset it to build the CLI, or run make temporal)", EnvCLI, p, err)
		}
		return p, nil
	}
	script := filepath.Join(RepoRoot(), "scripts", "build-temporal.sh")
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, script)
	cmd.Stderr = io.MultiWriter(&stderr, os.Stderr)
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("build temporal CLI with %s: %w\n%s", script, err, stderr.String())
	}
	return strings.TrimSpace(string(out)), nil
}

// RepoRoot is the module's root folder, found from this source file.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}
