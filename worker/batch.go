package worker

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/headstart-dev/headstart/forecasting"
)

// ObservationBatch is the ObservationsSignal's argument. Senders fill Gzip
// (gzipped JSON of the observations, about a seventh of the plain size, which
// keeps the forecaster's history small); a person signalling by hand may fill
// Observations instead. Both may be set.
type ObservationBatch struct {
	Observations []forecasting.Observation `json:"observations,omitempty"`
	Gzip         []byte                    `json:"gzip,omitempty"`
}

// maxBatchBytes bounds a batch's decompressed size.
const maxBatchBytes = 64 << 20

// ErrBadBatch is wrapped by errors decoding a batch.
var ErrBadBatch = errors.New("headstart: bad observation batch")

// NewObservationBatch compresses observations into a batch.
func NewObservationBatch(obs []forecasting.Observation) (ObservationBatch, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if err := json.NewEncoder(zw).Encode(obs); err != nil {
		return ObservationBatch{}, fmt.Errorf("encode batch: %w", err)
	}
	if err := zw.Close(); err != nil {
		return ObservationBatch{}, fmt.Errorf("encode batch: %w", err)
	}
	return ObservationBatch{Gzip: buf.Bytes()}, nil
}

// All returns the batch's observations, plain first.
//
//workflowcheck:ignore decoding bytes is deterministic
func (b ObservationBatch) All() ([]forecasting.Observation, error) {
	out := b.Observations
	if len(b.Gzip) == 0 {
		return out, nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(b.Gzip))
	if err != nil {
		return out, fmt.Errorf("%w: %v", ErrBadBatch, err)
	}
	var more []forecasting.Observation
	if err := json.NewDecoder(io.LimitReader(zr, maxBatchBytes)).Decode(&more); err != nil {
		return out, fmt.Errorf("%w: %v", ErrBadBatch, err)
	}
	return append(out, more...), nil
}
