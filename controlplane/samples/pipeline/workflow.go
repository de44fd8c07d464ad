// Package pipeline is a multi-stage data pipeline whose stages differ clearly
// in what they use, so that Headstart has something real to profile, forecast
// and prefetch:
//
//   - Extract is I/O-bound: it writes Input.ExtractMiB of data to a temporary
//     file, syncs it to disk and reads it back.
//   - Transform fans out Input.Shards parallel CPU-bound activities, each
//     hashing a 1 MiB block Input.TransformRounds times.
//   - Train is memory-heavy: it allocates and touches Input.TrainMiB of memory.
//   - Publish is small: it combines the digests into a report.
//
// Every stage's work is sized by the workflow input, so a starter that varies
// the input produces varying demand.
package pipeline

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// TaskQueue is the task queue the sample's worker polls.
const TaskQueue = "pipeline"

// Input sizes one pipeline run. Limits keep a run within a small machine.
type Input struct {
	// ExtractMiB is how much Extract writes and reads back (1 to 1024).
	ExtractMiB int
	// Shards is how many Transform activities run in parallel (1 to 64).
	Shards int
	// TransformRounds is how many times each shard hashes its 1 MiB block (1 to 100000).
	TransformRounds int
	// TrainMiB is how much memory Train allocates and touches (1 to 4096).
	TrainMiB int
	// Seed makes the generated data differ between runs.
	Seed uint64
	// PublishFailures makes the first PublishFailures attempts of Publish fail
	// with a retryable error of type ErrTypeTransientPublish (0 to 4).
	PublishFailures int
	// Simulate, if set, makes each stage sleep for its duration (heartbeating)
	// instead of doing its work, so that many runs fit a small machine: for
	// benchmarks of scheduling rather than of work.
	Simulate *Durations `json:",omitempty"`
	// TransformQueue, if set, is the task queue Transform's activities are
	// scheduled on, where a pool of stage workers polls; otherwise the
	// workflow's own.
	TransformQueue string `json:",omitempty"`
}

// Durations are simulated stage durations (0 to 10 minutes each).
type Durations struct {
	Extract, Transform, Train, Publish time.Duration
}

// Validate reports the first field outside its range.
func (in Input) Validate() error {
	check := func(name string, v, lo, hi int) error {
		if v < lo || v > hi {
			return fmt.Errorf("pipeline input: %s = %d, want %d to %d", name, v, lo, hi)
		}
		return nil
	}
	var sim error
	if d := in.Simulate; d != nil {
		for _, x := range []time.Duration{d.Extract, d.Transform, d.Train, d.Publish} {
			if x < 0 || x > 10*time.Minute {
				sim = fmt.Errorf("pipeline input: simulated duration %v, want 0 to 10m", x)
			}
		}
	}
	return errors.Join(sim,
		check("ExtractMiB", in.ExtractMiB, 1, 1024),
		check("Shards", in.Shards, 1, 64),
		check("TransformRounds", in.TransformRounds, 1, 100000),
		check("TrainMiB", in.TrainMiB, 1, 4096),
		check("PublishFailures", in.PublishFailures, 0, 4),
	)
}

// ErrTypeInvalidInput is the application error type of a rejected input; it is not retried.
const ErrTypeInvalidInput = "InvalidPipelineInput"

// Report is the pipeline's result.
type Report struct {
	ExtractedBytes int64
	ShardDigests   []string
	TrainedBytes   int64
	ModelChecksum  uint64
	Digest         string
}

// Pipeline runs extract → transform (fan-out) → train → publish.
func Pipeline(ctx workflow.Context, in Input) (Report, error) {
	if err := in.Validate(); err != nil {
		return Report{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeInvalidInput, err)
	}
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Minute,
		// Every activity heartbeats as it works, so a task on a worker that
		// died is retried within seconds, not after StartToCloseTimeout.
		HeartbeatTimeout: 15 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    time.Second,
			BackoffCoefficient: 2,
			MaximumAttempts:    6,
		},
	})
	var a *Activities
	var sim Durations
	if in.Simulate != nil {
		sim = *in.Simulate
	}

	var extracted ExtractResult
	if err := workflow.ExecuteActivity(ctx, a.Extract, ExtractInput{MiB: in.ExtractMiB, Seed: in.Seed, Shards: in.Shards, Sleep: sim.Extract}).Get(ctx, &extracted); err != nil {
		return Report{}, fmt.Errorf("extract: %w", err)
	}

	futures := make([]workflow.Future, len(extracted.ShardSeeds))
	tctx := ctx
	if in.TransformQueue != "" {
		tctx = workflow.WithTaskQueue(ctx, in.TransformQueue)
	}
	for i, seed := range extracted.ShardSeeds {
		futures[i] = workflow.ExecuteActivity(tctx, a.Transform, TransformInput{Shard: i, Seed: seed, Rounds: in.TransformRounds, Sleep: sim.Transform})
	}
	digests := make([]string, len(futures))
	for i, f := range futures {
		var r TransformResult
		if err := f.Get(ctx, &r); err != nil {
			return Report{}, fmt.Errorf("transform shard %d: %w", i, err)
		}
		digests[i] = r.Digest
	}

	var trained TrainResult
	if err := workflow.ExecuteActivity(ctx, a.Train, TrainInput{MiB: in.TrainMiB, Digests: digests, Sleep: sim.Train}).Get(ctx, &trained); err != nil {
		return Report{}, fmt.Errorf("train: %w", err)
	}

	var published PublishResult
	if err := workflow.ExecuteActivity(ctx, a.Publish, PublishInput{
		ExtractDigest: extracted.Digest, ShardDigests: digests, ModelChecksum: trained.Checksum, Failures: in.PublishFailures, Sleep: sim.Publish,
	}).Get(ctx, &published); err != nil {
		return Report{}, fmt.Errorf("publish: %w", err)
	}
	return Report{
		ExtractedBytes: extracted.Bytes,
		ShardDigests:   digests,
		TrainedBytes:   trained.Bytes,
		ModelChecksum:  trained.Checksum,
		Digest:         published.Digest,
	}, nil
}
