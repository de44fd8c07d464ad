package worker

import (
	"bytes"
	"compress/gzip"
	"encoding/gob"
	"errors"
	"fmt"
	"io"

	"github.com/headstart-dev/headstart/forecasting"
)

// ObservationBatch is the ObservationsSignal's argument. Senders fill Packed
// (the gob encoding of the observations, gzipped: about a tenth of their
// JSON, which keeps the forecaster's history small and its decoding fast); a
// person signalling by hand may fill Observations instead. Both may be set.
type ObservationBatch struct {
	Observations []forecasting.Observation `json:"observations,omitempty"`
	Packed       []byte                    `json:"packed,omitempty"`
}

// maxBatchBytes bounds a batch's decompressed size.
const maxBatchBytes = 64 << 20

// ErrBadBatch is wrapped by errors decoding a batch.
var ErrBadBatch = errors.New("headstart: bad observation batch")

// NewObservationBatch packs observations into a batch.
func NewObservationBatch(obs []forecasting.Observation) (ObservationBatch, error) {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if err := gob.NewEncoder(zw).Encode(obs); err != nil {
		return ObservationBatch{}, fmt.Errorf("encode batch: %w", err)
	}
	if err := zw.Close(); err != nil {
		return ObservationBatch{}, fmt.Errorf("encode batch: %w", err)
	}
	return ObservationBatch{Packed: buf.Bytes()}, nil
}

// All returns the batch's observations, plain first.
//
//workflowcheck:ignore decoding bytes is deterministic
func (b ObservationBatch) All() ([]forecasting.Observation, error) {
	out := b.Observations
	if len(b.Packed) == 0 {
		return out, nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(b.Packed))
	if err != nil {
		return out, fmt.Errorf("%w: %v", ErrBadBatch, err)
	}
	var more []forecasting.Observation
	if err := gob.NewDecoder(io.LimitReader(zr, maxBatchBytes)).Decode(&more); err != nil {
		return out, fmt.Errorf("%w: %v", ErrBadBatch, err)
	}
	return append(out, more...), nil
}
