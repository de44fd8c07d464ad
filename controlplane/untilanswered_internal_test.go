package controlplane

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.temporal.io/api/serviceerror"
)

// TestUntilAnsweredWaitsOutAWorkerReconnecting: a query that fails because
// no poller is connected yet (a control worker reconnecting after the
// server restarted) is asked again; any other failure is returned at once,
// and so is the last failure when the context ends.
func TestUntilAnsweredWaitsOutAWorkerReconnecting(t *testing.T) {
	calls := 0
	err := untilAnswered(context.Background(), func() error {
		if calls++; calls < 3 {
			return serviceerror.NewFailedPrecondition("no poller seen for task queue recently, worker may be down")
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("err %v after %d calls, want nil after 3", err, calls)
	}

	denied := serviceerror.NewPermissionDenied("no", "")
	calls = 0
	if err := untilAnswered(context.Background(), func() error { calls++; return denied }); !errors.Is(err, denied) || calls != 1 {
		t.Fatalf("err %v after %d calls, want the denial after 1", err, calls)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	down := serviceerror.NewUnavailable("down")
	if err := untilAnswered(ctx, func() error { return down }); !errors.Is(err, down) {
		t.Fatalf("err %v, want the last failure once the context ended", err)
	}
}
