package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
)

// ErrTypeTransientPublish is the application error type of Publish's injected failures.
const ErrTypeTransientPublish = "TransientPublishError"

const mib = 1 << 20

// Activities does each stage's real work. Safe for concurrent use.
type Activities struct {
	// Dir is where Extract writes its temporary files. If not set, os.TempDir().
	Dir string
}

// ExtractInput sizes Extract.
type ExtractInput struct {
	MiB    int
	Seed   uint64
	Shards int
	// Sleep, if set, is how long a simulated Extract takes instead of its work.
	Sleep time.Duration `json:",omitempty"`
}

// ExtractResult is what Extract wrote, its digest, and a seed for each shard.
type ExtractResult struct {
	Bytes      int64
	Digest     string
	ShardSeeds []uint64
}

// Extract writes in.MiB of pseudo-random data to a temporary file, syncs it to
// disk, reads it back while hashing it, and removes the file. It writes and
// reads exactly in.MiB × 1 MiB bytes.
func (a *Activities) Extract(ctx context.Context, in ExtractInput) (ExtractResult, error) {
	if in.Sleep > 0 {
		if err := simulate(ctx, in.Sleep); err != nil {
			return ExtractResult{}, err
		}
		return ExtractResult{ShardSeeds: shardSeeds(in.Seed, in.Shards)}, nil
	}
	f, err := os.CreateTemp(a.Dir, "headstart-extract-*")
	if err != nil {
		return ExtractResult{}, fmt.Errorf("extract: %w", err)
	}
	defer func() { _ = os.Remove(f.Name()) }()
	defer func() { _ = f.Close() }()

	rng := rand.NewChaCha8(seedBytes(in.Seed))
	block := make([]byte, mib)
	for i := 0; i < in.MiB; i++ {
		if err := ctx.Err(); err != nil {
			return ExtractResult{}, err
		}
		activity.RecordHeartbeat(ctx, i)
		_, _ = rng.Read(block)
		if _, err := f.Write(block); err != nil {
			return ExtractResult{}, fmt.Errorf("extract: write %s: %w", f.Name(), err)
		}
	}
	if err := f.Sync(); err != nil {
		return ExtractResult{}, fmt.Errorf("extract: sync %s: %w", f.Name(), err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return ExtractResult{}, fmt.Errorf("extract: %w", err)
	}
	h := sha256.New()
	n, err := io.CopyBuffer(h, f, block)
	if err != nil {
		return ExtractResult{}, fmt.Errorf("extract: read %s: %w", f.Name(), err)
	}
	sum := h.Sum(nil)
	return ExtractResult{Bytes: n, Digest: hex.EncodeToString(sum), ShardSeeds: shardSeeds(binary.LittleEndian.Uint64(sum[:8]), in.Shards)}, nil
}

func shardSeeds(base uint64, shards int) []uint64 {
	seeds := make([]uint64, shards)
	for i := range seeds {
		seeds[i] = base + uint64(i)
	}
	return seeds
}

// simulate sleeps for d, heartbeating every second, or until ctx ends.
func simulate(ctx context.Context, d time.Duration) error {
	done := time.NewTimer(d)
	defer done.Stop()
	beat := time.NewTicker(time.Second)
	defer beat.Stop()
	for {
		select {
		case <-done.C:
			return nil
		case <-beat.C:
			activity.RecordHeartbeat(ctx)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// TransformInput sizes one Transform shard.
type TransformInput struct {
	Shard  int
	Seed   uint64
	Rounds int
	// Sleep, if set, is how long a simulated shard takes instead of its work.
	Sleep time.Duration `json:",omitempty"`
}

// TransformResult is one shard's digest.
type TransformResult struct {
	Shard  int
	Digest string
}

// Transform hashes a 1 MiB block in.Rounds times, folding each digest back into
// the block. It is CPU-bound: one core for the whole activity.
func (a *Activities) Transform(ctx context.Context, in TransformInput) (TransformResult, error) {
	if in.Sleep > 0 {
		return TransformResult{Shard: in.Shard, Digest: fmt.Sprintf("simulated-%d", in.Seed)}, simulate(ctx, in.Sleep)
	}
	block := make([]byte, mib)
	_, _ = rand.NewChaCha8(seedBytes(in.Seed)).Read(block)
	var sum [sha256.Size]byte
	for r := 0; r < in.Rounds; r++ {
		if r%16 == 0 {
			if err := ctx.Err(); err != nil {
				return TransformResult{}, err
			}
			activity.RecordHeartbeat(ctx, r)
		}
		sum = sha256.Sum256(block)
		copy(block[(r*sha256.Size)%(mib-sha256.Size):], sum[:])
	}
	return TransformResult{Shard: in.Shard, Digest: hex.EncodeToString(sum[:])}, nil
}

// TrainInput sizes Train.
type TrainInput struct {
	MiB     int
	Digests []string
	// Sleep, if set, is how long a simulated Train takes instead of its work.
	Sleep time.Duration `json:",omitempty"`
}

// TrainResult is the size of the trained model and its checksum.
type TrainResult struct {
	Bytes    int64
	Checksum uint64
}

// Train allocates in.MiB of memory, writes every word of it, sorts a sixteenth
// of it and checksums all of it. Its peak memory exceeds the other stages' by
// about in.MiB.
func (a *Activities) Train(ctx context.Context, in TrainInput) (TrainResult, error) {
	if in.Sleep > 0 {
		return TrainResult{}, simulate(ctx, in.Sleep)
	}
	var seed uint64
	for _, d := range in.Digests {
		for _, c := range []byte(d) {
			seed = seed*31 + uint64(c)
		}
	}
	words := make([]uint64, in.MiB*mib/8)
	rng := rand.New(rand.NewPCG(seed, uint64(in.MiB)))
	for i := range words {
		if i%(1<<20) == 0 {
			if err := ctx.Err(); err != nil {
				return TrainResult{}, err
			}
			activity.RecordHeartbeat(ctx, i)
		}
		words[i] = rng.Uint64()
	}
	slices.Sort(words[:len(words)/16])
	var sum uint64
	for i, w := range words {
		sum += w * uint64(i+1)
	}
	return TrainResult{Bytes: int64(len(words)) * 8, Checksum: sum}, nil
}

// PublishInput is what Publish combines.
type PublishInput struct {
	ExtractDigest string
	ShardDigests  []string
	ModelChecksum uint64
	// Failures makes the first Failures attempts fail with ErrTypeTransientPublish.
	Failures int
	// Sleep, if set, is how long a simulated Publish takes before combining the digests.
	Sleep time.Duration `json:",omitempty"`
}

// PublishResult is the digest of everything published.
type PublishResult struct {
	Digest string
}

// Publish combines the digests into one. It is small in every resource.
func (a *Activities) Publish(ctx context.Context, in PublishInput) (PublishResult, error) {
	if attempt := activity.GetInfo(ctx).Attempt; int(attempt) <= in.Failures {
		return PublishResult{}, temporal.NewApplicationError(
			fmt.Sprintf("publish attempt %d failed on purpose (%d failures requested)", attempt, in.Failures),
			ErrTypeTransientPublish)
	}
	if in.Sleep > 0 {
		if err := simulate(ctx, in.Sleep); err != nil {
			return PublishResult{}, err
		}
	}
	h := sha256.New()
	h.Write([]byte(in.ExtractDigest))
	for _, d := range in.ShardDigests {
		h.Write([]byte(d))
	}
	_ = binary.Write(h, binary.LittleEndian, in.ModelChecksum)
	return PublishResult{Digest: hex.EncodeToString(h.Sum(nil))}, nil
}

func seedBytes(seed uint64) (b [32]byte) {
	binary.LittleEndian.PutUint64(b[:], seed)
	return b
}
