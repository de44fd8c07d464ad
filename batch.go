package headstart

import (
	"bytes"
	"compress/gzip"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
)

// ObservationBatch is the ObservationsSignal's argument. Senders fill Packed
// (the gob encoding of a Batch, gzipped: about a tenth of its
// JSON, which keeps the forecaster's history small and its decoding fast); a
// person signalling by hand may fill Observations and Starts instead. Both may be set.
type ObservationBatch struct {
	Observations []Observation `json:"observations,omitempty"`
	Starts       []StageStart  `json:"starts,omitempty"`
	Packed       []byte        `json:"packed,omitempty"`
	// Items is how many observations and start events Packed holds, so
	// that a batch shed unread is still counted.
	Items int `json:"items,omitempty"`
}

// maxBatchBytes bounds a batch's decompressed size.
const maxBatchBytes = 64 << 20

// ErrBadBatch is wrapped by errors decoding a batch.
var ErrBadBatch = errors.New("headstart: bad observation batch")

// NewObservationBatch packs a batch for the signal.
func NewObservationBatch(b Batch) (ObservationBatch, error) {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if err := gob.NewEncoder(zw).Encode(b); err != nil {
		return ObservationBatch{}, fmt.Errorf("encode batch: %w", err)
	}
	if err := zw.Close(); err != nil {
		return ObservationBatch{}, fmt.Errorf("encode batch: %w", err)
	}
	return ObservationBatch{Packed: buf.Bytes(), Items: b.Len()}, nil
}

// All returns the batch's observations and start events, plain ones first.
//
//workflowcheck:ignore decoding bytes is deterministic
func (b ObservationBatch) All() (Batch, error) {
	out := Batch{Observations: b.Observations, Starts: b.Starts}
	if len(b.Packed) == 0 {
		return out, nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(b.Packed))
	if err != nil {
		return out, fmt.Errorf("%w: %v", ErrBadBatch, err)
	}
	var more Batch
	if err := gob.NewDecoder(io.LimitReader(zr, maxBatchBytes)).Decode(&more); err != nil {
		return out, fmt.Errorf("%w: %v", ErrBadBatch, err)
	}
	out.Observations = append(out.Observations, more.Observations...)
	out.Starts = append(out.Starts, more.Starts...)
	return out, nil
}

// Batch is what a BatchingSink sends: observations, and start events.
type Batch struct {
	Observations []Observation
	Starts       []StageStart
}

// Len is how many items the batch holds.
func (b Batch) Len() int { return len(b.Observations) + len(b.Starts) }
