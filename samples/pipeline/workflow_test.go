package pipeline

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
)

func smallInput() Input {
	return Input{ExtractMiB: 2, Shards: 3, TransformRounds: 8, TrainMiB: 4, Seed: 42}
}

func TestPipelineRunsStagesInOrderWithFanOut(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	var a *Activities
	var order []string
	in := smallInput()

	env.OnActivity(a.Extract, mock.Anything, ExtractInput{MiB: 2, Seed: 42, Shards: 3}).Return(func(_ context.Context, in ExtractInput) (ExtractResult, error) {
		order = append(order, "extract")
		return ExtractResult{Bytes: 2 << 20, Digest: "e", ShardSeeds: []uint64{10, 11, 12}}, nil
	})
	env.OnActivity(a.Transform, mock.Anything, mock.Anything).Return(func(_ context.Context, in TransformInput) (TransformResult, error) {
		order = append(order, "transform")
		require.Equal(t, 8, in.Rounds)
		require.Equal(t, uint64(10+in.Shard), in.Seed)
		return TransformResult{Shard: in.Shard, Digest: string(rune('a' + in.Shard))}, nil
	}).Times(3)
	env.OnActivity(a.Train, mock.Anything, TrainInput{MiB: 4, Digests: []string{"a", "b", "c"}}).Return(func(_ context.Context, _ TrainInput) (TrainResult, error) {
		order = append(order, "train")
		return TrainResult{Bytes: 4 << 20, Checksum: 7}, nil
	})
	env.OnActivity(a.Publish, mock.Anything, PublishInput{ExtractDigest: "e", ShardDigests: []string{"a", "b", "c"}, ModelChecksum: 7}).Return(func(_ context.Context, _ PublishInput) (PublishResult, error) {
		order = append(order, "publish")
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
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
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

func TestPipelineRejectsInvalidInputWithoutRetrying(t *testing.T) {
	for name, in := range map[string]Input{
		"no shards":      {ExtractMiB: 1, Shards: 0, TransformRounds: 1, TrainMiB: 1},
		"huge extract":   {ExtractMiB: 5000, Shards: 1, TransformRounds: 1, TrainMiB: 1},
		"negative train": {ExtractMiB: 1, Shards: 1, TransformRounds: 1, TrainMiB: -1},
	} {
		t.Run(name, func(t *testing.T) {
			var s testsuite.WorkflowTestSuite
			env := s.NewTestWorkflowEnvironment()
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
