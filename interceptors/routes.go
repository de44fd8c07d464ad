package interceptors

import (
	"context"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/headstart-dev/headstart"
)

// RouteSyncOptions configure SyncRoutes. Zero values take the defaults.
type RouteSyncOptions struct {
	// Fleet whose coordinator's routes to follow. If not set, headstart.DefaultFleet.
	Fleet string
	// Namespace the replicas' task queues are in. If not set, "default".
	Namespace string
	// Interval between syncs. If not set, 1 s. Keep it well below
	// coordinator.RouteGrace (5 s): the coordinator stops a stage's replicas that long after
	// withdrawing its route.
	Interval time.Duration
	// Ready tells whether a queue has replicas polling. If not set,
	// PollersReady on Namespace.
	Ready ReadyFunc
	// OnError hears each failed sync (the routes are cleared then). If not
	// set, errors are dropped.
	OnError func(error)
}

// SyncRoutes keeps router's routes to those of the fleet's coordinator
// (headstart.QueryRoutes) whose replica queues have pollers, every Interval, until
// ctx is done. While the coordinator cannot be asked, every route is
// cleared, so a stage's activities go to its own queue: routing never
// sends work to replicas nobody vouches for.
func SyncRoutes(ctx context.Context, c client.Client, router *Router, opts RouteSyncOptions) {
	if opts.Fleet == "" {
		opts.Fleet = headstart.DefaultFleet
	}
	if opts.Namespace == "" {
		opts.Namespace = client.DefaultNamespace
	}
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.Ready == nil {
		opts.Ready = PollersReady(c, opts.Namespace)
	}
	t := time.NewTicker(opts.Interval)
	defer t.Stop()
	for {
		if err := syncRoutes(ctx, c, router, opts); err != nil {
			router.Clear()
			if opts.OnError != nil && ctx.Err() == nil {
				opts.OnError(err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func syncRoutes(ctx context.Context, c client.Client, router *Router, opts RouteSyncOptions) error {
	ctx, cancel := context.WithTimeout(ctx, max(opts.Interval, 5*time.Second))
	defer cancel()
	routes, err := routes(ctx, c, opts.Fleet)
	if err != nil {
		return err
	}
	return router.Sync(ctx, routes, opts.Ready)
}
