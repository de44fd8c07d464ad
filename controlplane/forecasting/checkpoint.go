package forecasting

import (
	"bytes"
	"compress/gzip"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
)

// ErrCheckpoint is wrapped by errors restoring a checkpoint.
var ErrCheckpoint = errors.New("invalid checkpoint")

// checkpointVersion changes when the checkpoint's layout does.
const checkpointVersion = 2

// headstartState is the Headstart sizer's state, as checkpointed.
type headstartState struct {
	Version int
	Opts    HeadstartOptions
	MaxSeen float64
	Seq     int64
	Stages  []stageState // sorted by name, so the bytes are deterministic
}

type pooledState struct{ Up, Down, N float64 }

type stageState struct {
	Name    string
	X       []float32
	Y       [numTargets][]float32
	Res     [numModels][]float32
	Score   [numTargets][numModels]float64
	Scored  [numTargets][numModels]bool
	MaxMem  float64
	Alpha   float64
	Seen    [numTargets]bool
	LastSeq int64
	// Errs and Slope are the stage's shares of the pools all stages share,
	// which are summed again on restore.
	Errs  [numTargets]pooledState
	Slope [numTargets][2]float64
	// First is the stage's first finished peak (see firstPeak). Added
	// within version 2: a checkpoint without it restores, and the stage's
	// next finished task stands in.
	First        float64
	FirstRequest bool
	FirstSet     bool
}

func to32(xs []float64) []float32 {
	out := make([]float32, len(xs))
	for i, x := range xs {
		out[i] = float32(x)
	}
	return out
}

func to64(xs []float32) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = float64(x)
	}
	return out
}

// Checkpoint returns the sizer's state, gzipped. Its size is bounded by
// MaxStages × Window: eight float32 values per kept task, plus a few per
// stage (measured in TestHeadstartCheckpointIsBounded). Values are stored as
// float32, so a restored sizer predicts within float32 rounding of the original.
func (h *Headstart) Checkpoint() ([]byte, error) {
	s := headstartState{Version: checkpointVersion, Opts: h.opts, MaxSeen: h.opts.Fallback.maxSeen, Seq: h.seq}
	names := make([]string, 0, len(h.stages))
	//workflowcheck:ignore collected, then sorted
	for name := range h.stages {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		st := h.stages[name]
		ss := stageState{Name: name, X: to32(st.x), MaxMem: st.maxMem, Alpha: st.alpha, Seen: st.seen, LastSeq: st.lastSeq, Score: st.score, Scored: st.scored}
		for r := range st.y {
			ss.Y[r] = to32(st.y[r])
		}
		for m := range st.res {
			ss.Res[m] = to32(st.res[m])
		}
		for r := range st.errs {
			ss.Errs[r] = pooledState{st.errs[r].up, st.errs[r].down, st.errs[r].n}
			ss.Slope[r] = [2]float64{st.slope[r].b, st.slope[r].w}
		}
		ss.First, ss.FirstRequest, ss.FirstSet = st.first.v, st.first.request, st.first.set
		s.Stages = append(s.Stages, ss)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if err := gob.NewEncoder(zw).Encode(s); err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	return buf.Bytes(), nil
}

// RestoreHeadstart rebuilds a sizer from Checkpoint's bytes.
func RestoreHeadstart(b []byte) (*Headstart, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCheckpoint, err)
	}
	var s headstartState
	if err := gob.NewDecoder(io.LimitReader(zr, 256<<20)).Decode(&s); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCheckpoint, err)
	}
	if s.Version != checkpointVersion {
		return nil, fmt.Errorf("%w: version %d, this build reads %d", ErrCheckpoint, s.Version, checkpointVersion)
	}
	if err := s.check(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCheckpoint, err)
	}
	h := NewHeadstart(s.Opts)
	h.opts.Fallback.maxSeen = s.MaxSeen
	h.seq = s.Seq
	for _, ss := range s.Stages {
		name := ss.Name
		if len(ss.X) > h.opts.Window {
			return nil, fmt.Errorf("%w: stage %s keeps %d tasks, window is %d", ErrCheckpoint, name, len(ss.X), h.opts.Window)
		}
		st := &stageHistory{x: to64(ss.X), maxMem: ss.MaxMem, alpha: ss.Alpha, seen: ss.Seen, lastSeq: ss.LastSeq, score: ss.Score, scored: ss.Scored}
		for r := range ss.Y {
			if len(ss.Y[r]) != len(ss.X) {
				return nil, fmt.Errorf("%w: stage %s: %d values for %d tasks", ErrCheckpoint, name, len(ss.Y[r]), len(ss.X))
			}
			st.y[r] = to64(ss.Y[r])
		}
		for m := range ss.Res {
			if len(ss.Res[m]) > h.opts.Window {
				return nil, fmt.Errorf("%w: stage %s keeps %d residuals, window is %d", ErrCheckpoint, name, len(ss.Res[m]), h.opts.Window)
			}
			st.res[m] = to64(ss.Res[m])
		}
		for r := range ss.Errs {
			st.errs[r] = pooledVariance{ss.Errs[r].Up, ss.Errs[r].Down, ss.Errs[r].N}
			st.slope[r].b, st.slope[r].w = ss.Slope[r][0], ss.Slope[r][1]
			h.pooled[r].include(st.errs[r].variances())
			h.slopes[r].sum += st.slope[r].w * st.slope[r].b
			h.slopes[r].weight += st.slope[r].w
		}
		st.first = firstPeak{v: ss.First, request: ss.FirstRequest, set: ss.FirstSet}
		h.stages[name] = st
	}
	return h, nil
}

// maxCheckpointWindow bounds the window a checkpoint may ask for.
const maxCheckpointWindow = 100000

// check rejects what no sizer writes: options out of range and figures
// that are not finite, which would otherwise turn up as NaN predictions or
// as searches that do not end.
func (s headstartState) check() error {
	o := s.Opts
	finite := func(xs ...float64) bool {
		for _, x := range xs {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return false
			}
		}
		return true
	}
	switch {
	case !finite(o.Quantile, o.Margin, o.RateQuantile, o.Fallback.Margin, o.Fallback.Default, s.MaxSeen):
		return fmt.Errorf("options or largest peak not finite")
	case o.Window < 0 || o.Window > maxCheckpointWindow, o.MinHistory < 0 || o.MinHistory > maxCheckpointWindow:
		return fmt.Errorf("window %d, min history %d", o.Window, o.MinHistory)
	case o.MaxStages < 0 || len(s.Stages) > max(o.MaxStages, 1000):
		return fmt.Errorf("%d stages, at most %d", len(s.Stages), o.MaxStages)
	}
	for _, st := range s.Stages {
		ok := finite(st.MaxMem, st.Alpha, st.First)
		for _, v := range st.X {
			ok = ok && finite(float64(v))
		}
		for r := range st.Y {
			for _, v := range st.Y[r] {
				ok = ok && !math.IsInf(float64(v), 0) // NaN: not measured for that task
			}
			ok = ok && finite(st.Errs[r].Up, st.Errs[r].Down, st.Errs[r].N, st.Slope[r][0], st.Slope[r][1]) && st.Errs[r].N >= 0 && st.Slope[r][1] >= 0
			for m := range st.Score[r] {
				ok = ok && finite(st.Score[r][m])
			}
		}
		for m := range st.Res {
			for _, v := range st.Res[m] {
				ok = ok && finite(float64(v))
			}
		}
		if !ok {
			return fmt.Errorf("stage %s has figures that are not finite", st.Name)
		}
	}
	return nil
}
