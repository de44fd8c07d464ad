package controlplane

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/controlplane/activities"
)

// StatusMetrics export the forecaster's headline figures — items taken in
// and rejected, items and batches shed for being too far behind, the
// batches waiting — as gauges of the control worker (headstart_forecaster_*),
// at zero from the start. Follow keeps them current.
type StatusMetrics struct {
	observed, rejected, shed, shedBatches, backlog prometheus.Gauge
}

// NewStatusMetrics registers the gauges on reg.
func NewStatusMetrics(reg prometheus.Registerer) (*StatusMetrics, error) {
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "headstart", Subsystem: "forecaster", Name: name, Help: help})
	}
	m := &StatusMetrics{
		observed:    gauge("observed_items", "Observations the forecaster has taken in (its lifetime, across continue-as-new)."),
		rejected:    gauge("rejected_items", "Observations and batches the forecaster rejected as invalid."),
		shed:        gauge("shed_items", "Observations and start events the forecaster shed unread because it was too far behind."),
		shedBatches: gauge("shed_batches", "Batches the forecaster shed unread because it was too far behind."),
		backlog:     gauge("backlog_batches", "Batches waiting to be taken in by the forecaster."),
	}
	for _, g := range []prometheus.Collector{m.observed, m.rejected, m.shed, m.shedBatches, m.backlog} {
		if err := reg.Register(g); err != nil {
			return nil, fmt.Errorf("register forecaster status metrics: %w", err)
		}
	}
	return m, nil
}

// Follow asks the fleet's forecaster for its status every interval until
// ctx is done, and sets the gauges. A forecaster that cannot be asked
// leaves them as they were; onError (if not nil) hears why.
func (m *StatusMetrics) Follow(ctx context.Context, c client.Client, fleet string, interval time.Duration, onError func(error)) {
	if fleet == "" {
		fleet = headstart.DefaultFleet
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := m.update(ctx, c, fleet); err != nil && onError != nil && ctx.Err() == nil {
			onError(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (m *StatusMetrics) update(ctx context.Context, c client.Client, fleet string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := activities.Query[headstart.ForecasterStatus](ctx, c, headstart.ForecasterWorkflowID(fleet), headstart.QueryStatus)
	if err != nil {
		return err
	}
	m.observed.Set(float64(st.Observed))
	m.rejected.Set(float64(st.Rejected))
	m.shed.Set(float64(st.Shed))
	m.shedBatches.Set(float64(st.ShedBatches))
	m.backlog.Set(float64(st.Backlog))
	return nil
}
