package ledger

import (
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/resources"
)

// outcome is what one update returned.
type outcome struct {
	value any
	err   error
}

// steps issues one update a minute, in order, recording each outcome (a
// validator's rejection included); query callbacks may be mixed in.
type steps struct {
	env      *testsuite.TestWorkflowEnvironment
	outcomes []outcome
	n        int
}

func (s *steps) update(name string, arg any) int {
	i := len(s.outcomes)
	s.outcomes = append(s.outcomes, outcome{})
	s.n++
	s.env.RegisterDelayedCallback(func() {
		s.env.UpdateWorkflow(name, "", &testsuite.TestUpdateCallback{
			OnAccept:   func() {},
			OnReject:   func(err error) { s.outcomes[i] = outcome{err: err} },
			OnComplete: func(v any, err error) { s.outcomes[i] = outcome{v, err} },
		}, arg)
	}, time.Duration(s.n)*time.Minute)
	return i
}

func (s *steps) at(d time.Duration, f func()) { s.env.RegisterDelayedCallback(f, d) }

func appType(err error) string {
	var app *temporal.ApplicationError
	if errors.As(err, &app) {
		return app.Type()
	}
	return ""
}

func newLedgerEnv(t *testing.T) *testsuite.TestWorkflowEnvironment {
	var s testsuite.WorkflowTestSuite
	s.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(Workflow, workflow.RegisterOptions{Name: headstart.LedgerWorkflowName})
	return env
}

func TestLedgerReservesReclaimsExpiresAndRejects(t *testing.T) {
	env := newLedgerEnv(t)
	s := &steps{env: env}
	soft := req("prefetch-train-1", 6, 16, true, 0)
	first := s.update(headstart.UpdateReserve, soft)
	retry := s.update(headstart.UpdateReserve, soft) // a retried activity reserves again
	hard := req("run-42-train", 4, 16, false, 10)
	hard.TTL = 10 * time.Minute
	reclaim := s.update(headstart.UpdateReserve, hard)
	malformed := s.update(headstart.UpdateReserve, req("x", -1, 1, false, 0))
	elsewhere := req("y", 1, 1, false, 0)
	elsewhere.Pool = "elsewhere"
	unknownPool := s.update(headstart.UpdateReserve, elsewhere)
	huge := s.update(headstart.UpdateReserve, req("huge", 5, 1, false, 0))
	belowHard := s.update(headstart.UpdateSetCapacity, vec(2, 32))
	var status, afterExpiry headstart.PoolStatus
	s.at(9*time.Minute, func() { status = query[headstart.PoolStatus](t, env, headstart.QueryPool) })
	s.at(30*time.Minute, func() {
		afterExpiry = query[headstart.PoolStatus](t, env, headstart.QueryPool)
		env.CancelWorkflow()
	})
	env.ExecuteWorkflow(headstart.LedgerWorkflowName, headstart.LedgerInput{Pool: "p", Capacity: vec(8, 32)})
	o := s.outcomes

	require.NoError(t, o[first].err)
	require.False(t, o[first].value.(headstart.ReserveResult).Existing)
	require.NoError(t, o[retry].err)
	require.True(t, o[retry].value.(headstart.ReserveResult).Existing, "a retried reserve holds once")
	require.NoError(t, o[reclaim].err)
	require.Equal(t, []string{"prefetch-train-1"}, o[reclaim].value.(headstart.ReserveResult).Reclaimed, "the hard request reclaims the soft one")
	require.Equal(t, "InvalidReservation", appType(o[malformed].err), "%v", o[malformed].err)
	require.Equal(t, "UnknownPool", appType(o[unknownPool].err), "%v", o[unknownPool].err)
	require.Equal(t, "InsufficientCapacity", appType(o[huge].err), "%v", o[huge].err)
	require.Equal(t, "CapacityBelowHard", appType(o[belowHard].err), "%v", o[belowHard].err)

	require.Equal(t, 1, status.Reservations)
	require.Equal(t, vec(4, 16), status.Hard)
	require.Equal(t, int64(1), status.Reclaims)
	require.Equal(t, 0, afterExpiry.Reservations, "the hard reservation expired after its 10 minutes")
	require.Equal(t, int64(1), afterExpiry.Expiries)
	require.Equal(t, vec(8, 32), afterExpiry.Free)
}

func TestLedgerReleasesIdempotently(t *testing.T) {
	env := newLedgerEnv(t)
	s := &steps{env: env}
	s.update(headstart.UpdateReserve, req("k", 1, 1, false, 0))
	first := s.update(headstart.UpdateRelease, headstart.ReleaseRequest{Key: "k"})
	again := s.update(headstart.UpdateRelease, headstart.ReleaseRequest{Key: "k"})
	empty := s.update(headstart.UpdateRelease, headstart.ReleaseRequest{})
	s.at(10*time.Minute, env.CancelWorkflow)
	env.ExecuteWorkflow(headstart.LedgerWorkflowName, headstart.LedgerInput{Pool: "p", Capacity: vec(8, 32)})
	o := s.outcomes
	require.Equal(t, true, o[first].value)
	require.Equal(t, false, o[again].value, "a retried release is a no-op")
	require.Equal(t, "InvalidReservation", appType(o[empty].err))

	bad := newLedgerEnv(t)
	bad.ExecuteWorkflow(headstart.LedgerWorkflowName, headstart.LedgerInput{Pool: "p", Capacity: resources.Vector{}.With(resources.CPU, -1)})
	require.Equal(t, "InvalidReservation", appType(bad.GetWorkflowError()))
}

func query[T any](t *testing.T, env *testsuite.TestWorkflowEnvironment, name string) T {
	t.Helper()
	v, err := env.QueryWorkflow(name)
	require.NoError(t, err)
	var out T
	require.NoError(t, v.Get(&out))
	return out
}
