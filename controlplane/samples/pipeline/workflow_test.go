package pipeline

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
)

// newTestEnv returns a test environment that logs warnings and errors only.
func newTestEnv() *testsuite.TestWorkflowEnvironment {
	var s testsuite.WorkflowTestSuite
	s.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	return s.NewTestWorkflowEnvironment()
}

func smallInput() Input {
	return Input{ExtractMiB: 2, Shards: 3, TransformRounds: 8, TrainMiB: 4, Seed: 42}
}

func TestPipelineRunsStagesInOrderWithFanOut(t *testing.T) {
	env := newTestEnv()
	var a *Activities
	var mu sync.Mutex // the fan-out's mocks run concurrently
	var order []string
	visit := func(stage string) {
		mu.Lock()
		defer mu.Unlock()
		order = append(order, stage)
	}
	in := smallInput()

	env.OnActivity(a.Extract, mock.Anything, ExtractInput{MiB: 2, Seed: 42, Shards: 3}).Return(func(_ context.Context, in ExtractInput) (ExtractResult, error) {
		visit("extract")
		return ExtractResult{Bytes: 2 << 20, Digest: "e", ShardSeeds: []uint64{10, 11, 12}}, nil
	})
	env.OnActivity(a.Transform, mock.Anything, mock.Anything).Return(func(_ context.Context, in TransformInput) (TransformResult, error) {
		visit("transform")
		require.Equal(t, 8, in.Rounds)
		require.Equal(t, uint64(10+in.Shard), in.Seed)
		return TransformResult{Shard: in.Shard, Digest: string(rune('a' + in.Shard))}, nil
	}).Times(3)
	env.OnActivity(a.Train, mock.Anything, TrainInput{MiB: 4, Digests: []string{"a", "b", "c"}}).Return(func(_ context.Context, _ TrainInput) (TrainResult, error) {
		visit("train")
		return TrainResult{Bytes: 4 << 20, Checksum: 7}, nil
	})
	env.OnActivity(a.Publish, mock.Anything, PublishInput{ExtractDigest: "e", ShardDigests: []string{"a", "b", "c"}, ModelChecksum: 7}).Return(func(_ context.Context, _ PublishInput) (PublishResult, error) {
		visit("publish")
		return PublishResult{Digest: "p"}, nil
	})

	env.ExecuteWorkflow(Pipeline, in)

	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var r Report
	require.NoError(t, env.GetWorkflowResult(&r))
	require.Equal(t, Report{ExtractedBytes: 2 << 20, ShardDigests: []string{"a", "b", "c"}, TrainedBytes: 4 << 20, ModelChecksum: 7, Digest: "p"}, r)
	require.Equal(t, []string{"extract", "transform", "transform", "transform", "train", "publish"}, order)
	env.AssertExpectations(t)
}

func TestPipelineWithRealActivities(t *testing.T) {
	env := newTestEnv()
	env.RegisterActivity(&Activities{Dir: t.TempDir()})
	in := smallInput()
	in.PublishFailures = 2

	env.ExecuteWorkflow(Pipeline, in)

	require.NoError(t, env.GetWorkflowError())
	var r Report
	require.NoError(t, env.GetWorkflowResult(&r))
	require.Equal(t, int64(2<<20), r.ExtractedBytes)
	require.Len(t, r.ShardDigests, 3)
	require.Equal(t, int64(4<<20), r.TrainedBytes)
	require.Len(t, r.Digest, 64)
}

// TestSimulatedPipelineSleepsAndRunsTransformOnItsQueue: a simulated run
// does no work (nothing extracted, trained), takes its stages' durations in
// workflow time, and schedules Transform on the stage queue asked for.
func TestSimulatedPipelineSleepsAndRunsTransformOnItsQueue(t *testing.T) {
	env := newTestEnv()
	env.RegisterActivity(&Activities{Dir: t.TempDir()})
	var mu sync.Mutex
	queues := map[string]string{}
	env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		mu.Lock()
		defer mu.Unlock()
		queues[info.ActivityType.Name] = info.TaskQueue
	})
	in := smallInput()
	in.Simulate = &Durations{Extract: 50 * time.Millisecond, Transform: 20 * time.Millisecond, Train: 10 * time.Millisecond, Publish: time.Millisecond}
	in.TransformQueue = "pipeline-transform"

	env.ExecuteWorkflow(Pipeline, in)

	require.NoError(t, env.GetWorkflowError())
	var r Report
	require.NoError(t, env.GetWorkflowResult(&r))
	require.Zero(t, r.ExtractedBytes)
	require.Zero(t, r.TrainedBytes)
	require.Len(t, r.ShardDigests, 3)
	require.Equal(t, "pipeline-transform", queues["Transform"])
	require.NotEqual(t, "pipeline-transform", queues["Train"])
}

func TestPipelineRejectsInvalidInputWithoutRetrying(t *testing.T) {
	for name, in := range map[string]Input{
		"negative sleep": {ExtractMiB: 1, Shards: 1, TransformRounds: 1, TrainMiB: 1, Simulate: &Durations{Train: -time.Second}},
		"no shards":      {ExtractMiB: 1, Shards: 0, TransformRounds: 1, TrainMiB: 1},
		"huge extract":   {ExtractMiB: 5000, Shards: 1, TransformRounds: 1, TrainMiB: 1},
		"negative train": {ExtractMiB: 1, Shards: 1, TransformRounds: 1, TrainMiB: -1},
	} {
		t.Run(name, func(t *testing.T) {
			env := newTestEnv()
			env.ExecuteWorkflow(Pipeline, in)
			err := env.GetWorkflowError()
			var appErr *temporal.ApplicationError
			require.True(t, errors.As(err, &appErr), "error %v is not an application error", err)
			require.Equal(t, ErrTypeInvalidInput, appErr.Type())
			require.True(t, appErr.NonRetryable())
		})
	}
}

func TestPublishFailsTheRequestedAttempts(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(&Activities{})
	var a *Activities
	_, err := env.ExecuteActivity(a.Publish, PublishInput{Failures: 1})
	var appErr *temporal.ApplicationError
	require.True(t, errors.As(err, &appErr), "error %v", err)
	require.Equal(t, ErrTypeTransientPublish, appErr.Type())
}
