package interceptors_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/headstart-dev/headstart/interceptors"
)

// TestRouterSyncMakesTheRoutesExactlyTheReadyStages: a stage is routed
// while its queue is ready; one no longer listed, or whose queue has no
// pollers, goes back to its own queue; an error of ready changes nothing.
func TestRouterSyncMakesTheRoutesExactlyTheReadyStages(t *testing.T) {
	ctx := context.Background()
	polled := map[string]bool{"a-replicas": true, "b-replicas": true}
	ready := func(_ context.Context, q string) (bool, error) { return polled[q], nil }
	r := interceptors.NewRouter()
	require.NoError(t, r.Sync(ctx, map[string]string{"W/a": "a-replicas", "W/b": "b-replicas"}, ready))
	q, ok := r.Route("W/a")
	require.True(t, ok)
	require.Equal(t, "a-replicas", q)

	polled["b-replicas"] = false
	require.NoError(t, r.Sync(ctx, map[string]string{"W/b": "b-replicas"}, ready))
	_, ok = r.Route("W/a")
	require.False(t, ok, "a stage no longer listed is not routed")
	_, ok = r.Route("W/b")
	require.False(t, ok, "a stage whose replicas do not poll is not routed")

	polled["b-replicas"] = true
	require.NoError(t, r.Sync(ctx, map[string]string{"W/b": "b-replicas"}, ready))
	boom := errors.New("describe failed")
	require.NoError(t, r.Sync(ctx, map[string]string{}, func(context.Context, string) (bool, error) { return false, boom }))
	_, ok = r.Route("W/b")
	require.False(t, ok, "an empty list clears every route")

	require.NoError(t, r.Sync(ctx, map[string]string{"W/b": "b-replicas"}, ready))
	require.ErrorIs(t, r.Sync(ctx, map[string]string{"W/b": "b-replicas"}, func(context.Context, string) (bool, error) { return false, boom }), boom)
	_, ok = r.Route("W/b")
	require.True(t, ok, "a failed sync leaves the routes as they were")
	r.Clear()
	_, ok = r.Route("W/b")
	require.False(t, ok)
}
