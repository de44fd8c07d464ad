package controlplane

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/controlplane/activities"
	"github.com/headstart-dev/headstart/controlplane/coordinator"
	"github.com/headstart-dev/headstart/resources"
)

// StatusMetrics export what the control plane holds as gauges of the
// control worker, for dashboards and alerts (deploy/grafana,
// deploy/prometheus): the forecaster's headline figures — items taken in
// and rejected, items and batches shed for being too far behind, the
// batches waiting (headstart_forecaster_*, at zero from the start) — and,
// per stage, its predictions and confidence (headstart_stage_predicted,
// headstart_stage_confidence), its ledger reservations
// (headstart_stage_reservations, headstart_stage_reserved), its planned
// replicas (headstart_stage_replicas) and the coordinator's last decision
// (headstart_coordinator_decision); per pool, reservations past their TTL
// (headstart_ledger_reservations_past_ttl), expiries and reclaims. Follow
// keeps them current; series of stages no longer held go with them.
type StatusMetrics struct {
	observed, rejected, shed, shedBatches, backlog prometheus.Gauge

	predicted, confidence, reservations, reserved, replicas, decision *prometheus.GaugeVec
	pastTTL, expiries, reclaims                                       *prometheus.GaugeVec
}

// Watch names what Follow asks.
type Watch struct {
	Fleet string
	// Pools are the ledgers' pools.
	Pools []string
}

// NewStatusMetrics registers the gauges on reg.
func NewStatusMetrics(reg prometheus.Registerer) (*StatusMetrics, error) {
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "headstart", Subsystem: "forecaster", Name: name, Help: help})
	}
	vec := func(subsystem, name, help string, labels ...string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "headstart", Subsystem: subsystem, Name: name, Help: help}, labels)
	}
	m := &StatusMetrics{
		observed:    gauge("observed_items", "Observations the forecaster has taken in (its lifetime, across continue-as-new)."),
		rejected:    gauge("rejected_items", "Observations and batches the forecaster rejected as invalid."),
		shed:        gauge("shed_items", "Observations and start events the forecaster shed unread because it was too far behind."),
		shedBatches: gauge("shed_batches", "Batches the forecaster shed unread because it was too far behind."),
		backlog:     gauge("backlog_batches", "Batches waiting to be taken in by the forecaster."),
		predicted: vec("stage", "predicted", "The forecaster's prediction for one task of the stage: memory_bytes, cpu_cores, duration_seconds; its target and interval bounds.",
			"stage", "resource", "bound"),
		confidence:   vec("stage", "confidence", "The forecaster's confidence in the stage's prediction, 0 to 1.", "stage"),
		reservations: vec("stage", "reservations", "Ledger reservations held for the stage.", "stage", "pool"),
		reserved:     vec("stage", "reserved", "What the ledger holds for the stage: cpu_cores, memory_bytes.", "stage", "pool", "resource"),
		replicas:     vec("stage", "replicas", "Replicas the coordinator plans for the stage.", "stage"),
		decision:     vec("coordinator", "decision", "The coordinator's last decision for an upcoming stage: 1 for its kind (skip, wait, reserve, partial, delay).", "stage", "kind"),
		pastTTL:      vec("ledger", "reservations_past_ttl", "Reservations the ledger still holds a minute or more past their expiry: a leak.", "pool"),
		expiries:     vec("ledger", "expiries", "Reservations that expired (their holder never released them), over the ledger's life.", "pool"),
		reclaims:     vec("ledger", "reclaims", "Soft reservations reclaimed for hard requests, over the ledger's life.", "pool"),
	}
	for _, g := range []prometheus.Collector{m.observed, m.rejected, m.shed, m.shedBatches, m.backlog,
		m.predicted, m.confidence, m.reservations, m.reserved, m.replicas, m.decision, m.pastTTL, m.expiries, m.reclaims} {
		if err := reg.Register(g); err != nil {
			return nil, fmt.Errorf("register forecaster status metrics: %w", err)
		}
	}
	return m, nil
}

// Follow asks the fleet's workflows for their state every interval until
// ctx is done, and sets the gauges. A workflow that cannot be asked leaves
// its gauges as they were; onError (if not nil) hears why.
func (m *StatusMetrics) Follow(ctx context.Context, c client.Client, w Watch, interval time.Duration, onError func(error)) {
	if w.Fleet == "" {
		w.Fleet = headstart.DefaultFleet
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := m.update(ctx, c, w); err != nil && onError != nil && ctx.Err() == nil {
			onError(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (m *StatusMetrics) update(ctx context.Context, c client.Client, w Watch) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	forecaster := headstart.ForecasterWorkflowID(w.Fleet)
	var errs []error
	if st, err := activities.Query[headstart.ForecasterStatus](ctx, c, forecaster, headstart.QueryStatus); err != nil {
		errs = append(errs, err)
	} else {
		m.observed.Set(float64(st.Observed))
		m.rejected.Set(float64(st.Rejected))
		m.shed.Set(float64(st.Shed))
		m.shedBatches.Set(float64(st.ShedBatches))
		m.backlog.Set(float64(st.Backlog))
	}
	if ps, err := activities.Query[[]headstart.Prediction](ctx, c, forecaster, headstart.QueryPredictions); err != nil {
		errs = append(errs, err)
	} else {
		m.predicted.Reset()
		m.confidence.Reset()
		for _, p := range ps {
			for resource, b := range map[string]headstart.Bounds{"memory_bytes": p.Memory, "cpu_cores": p.CPU, "duration_seconds": p.Duration} {
				m.predicted.WithLabelValues(p.Stage, resource, "target").Set(b.Target)
				m.predicted.WithLabelValues(p.Stage, resource, "lower").Set(b.Lower)
				m.predicted.WithLabelValues(p.Stage, resource, "upper").Set(b.Upper)
			}
			m.confidence.WithLabelValues(p.Stage).Set(p.Confidence)
		}
	}
	m.reservations.Reset()
	m.reserved.Reset()
	for _, pool := range w.Pools {
		if err := m.updatePool(ctx, c, pool); err != nil {
			errs = append(errs, err)
		}
	}
	if st, err := activities.Query[coordinator.Status](ctx, c, headstart.CoordinatorWorkflowID(w.Fleet), headstart.QueryCoordinatorState); err != nil {
		if !isNotFound(err) { // prefetching off: no coordinator
			errs = append(errs, err)
		}
	} else {
		m.replicas.Reset()
		for stage, p := range st.State.Plans {
			m.replicas.WithLabelValues(stage).Set(float64(p.Replicas))
		}
	}
	if ds, err := activities.Query[[]coordinator.Decision](ctx, c, headstart.CoordinatorWorkflowID(w.Fleet), headstart.QueryDecisions); err == nil {
		m.decision.Reset()
		for _, d := range ds {
			m.decision.WithLabelValues(d.Stage, string(d.Kind)).Set(1)
		}
	}
	return errors.Join(errs...)
}

// leakGrace is how long past its expiry a reservation may still be held
// before it counts as leaked: the ledger expires reservations on its timer.
const leakGrace = time.Minute

func (m *StatusMetrics) updatePool(ctx context.Context, c client.Client, pool string) error {
	id := headstart.LedgerWorkflowID(pool)
	st, err := activities.Query[headstart.PoolStatus](ctx, c, id, headstart.QueryPool)
	if err != nil {
		return err
	}
	m.expiries.WithLabelValues(pool).Set(float64(st.Expiries))
	m.reclaims.WithLabelValues(pool).Set(float64(st.Reclaims))
	rs, err := activities.Query[[]headstart.Reservation](ctx, c, id, headstart.QueryReservations)
	if err != nil {
		return err
	}
	leaked := 0
	now := time.Now()
	for _, r := range rs {
		if !r.Expires.IsZero() && now.Sub(r.Expires) > leakGrace {
			leaked++
		}
		m.reservations.WithLabelValues(r.Stage, pool).Add(1)
		m.reserved.WithLabelValues(r.Stage, pool, "cpu_cores").Add(r.Resources.Get(resources.CPU))
		m.reserved.WithLabelValues(r.Stage, pool, "memory_bytes").Add(r.Resources.Get(resources.Memory))
	}
	m.pastTTL.WithLabelValues(pool).Set(float64(leaked))
	return nil
}

func isNotFound(err error) bool {
	var nf *serviceerror.NotFound
	return errors.As(err, &nf)
}
