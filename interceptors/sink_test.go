package interceptors_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/interceptors"
)

func obs(i int) headstart.Observation {
	return headstart.Observation{Stage: "W/a", Attempt: int32(i)}
}

func TestMemorySinkKeepsTheNewestInOrder(t *testing.T) {
	s := interceptors.NewMemorySink(3)
	for i := 1; i <= 5; i++ {
		require.NoError(t, s.Observe(context.Background(), obs(i)))
	}
	var got []int32
	for _, o := range s.Observations() {
		got = append(got, o.Attempt)
	}
	require.Equal(t, []int32{3, 4, 5}, got)
}

type batches struct {
	mu  sync.Mutex
	got []headstart.Batch
	err error
}

func (b *batches) send(_ context.Context, batch headstart.Batch) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.got = append(b.got, batch)
	return b.err
}

func (b *batches) sizes() []int {
	b.mu.Lock()
	defer b.mu.Unlock()
	var n []int
	for _, x := range b.got {
		n = append(n, x.Len())
	}
	return n
}

func TestBatchingSinkSendsFullBatchesAndFlushesOnCloseAndTimer(t *testing.T) {
	var b batches
	s, err := interceptors.NewBatchingSink(interceptors.BatchOptions{Send: b.send, MaxBatch: 3, FlushInterval: time.Hour})
	require.NoError(t, err)
	for i := 1; i <= 7; i++ {
		require.NoError(t, s.Observe(context.Background(), obs(i)))
	}
	require.Equal(t, []int{3, 3}, b.sizes(), "full batches go at once")
	require.NoError(t, s.Close(context.Background()))
	require.Equal(t, []int{3, 3, 1}, b.sizes(), "close flushes the rest")
	require.Equal(t, interceptors.BatchStats{Batches: 3, Sent: 7}, s.Stats())

	var timed batches
	s2, err := interceptors.NewBatchingSink(interceptors.BatchOptions{Send: timed.send, MaxBatch: 100, FlushInterval: 10 * time.Millisecond})
	require.NoError(t, err)
	defer s2.Close(context.Background())
	require.NoError(t, s2.Observe(context.Background(), obs(1)))
	require.Eventually(t, func() bool { return len(timed.sizes()) == 1 }, 5*time.Second, 5*time.Millisecond, "the timer flushes a partial batch")
}

func TestBatchingSinkCarriesStartEvents(t *testing.T) {
	var b batches
	s, err := interceptors.NewBatchingSink(interceptors.BatchOptions{Send: b.send, MaxBatch: 3, FlushInterval: time.Hour})
	require.NoError(t, err)
	require.NoError(t, s.ObserveStart(context.Background(), headstart.StageStart{Stage: "W/a", RunID: "r"}))
	require.NoError(t, s.Observe(context.Background(), obs(1)))
	require.NoError(t, s.ObserveStart(context.Background(), headstart.StageStart{Stage: "W/b", RunID: "r"}))
	require.Len(t, b.got, 1, "starts count towards a full batch")
	require.Equal(t, []string{"W/a", "W/b"}, []string{b.got[0].Starts[0].Stage, b.got[0].Starts[1].Stage})
	require.Len(t, b.got[0].Observations, 1)
	require.NoError(t, s.Close(context.Background()))
}

func TestBatchingSinkCountsFailedBatches(t *testing.T) {
	b := batches{err: errors.New("forecaster down")}
	s, err := interceptors.NewBatchingSink(interceptors.BatchOptions{Send: b.send, MaxBatch: 2, FlushInterval: time.Hour})
	require.NoError(t, err)
	require.NoError(t, s.Observe(context.Background(), obs(1)))
	require.Error(t, s.Observe(context.Background(), obs(2)))
	require.NoError(t, s.Close(context.Background()))
	require.Equal(t, interceptors.BatchStats{Failed: 2}, s.Stats())
}

func TestBatchingSinkNeedsSend(t *testing.T) {
	_, err := interceptors.NewBatchingSink(interceptors.BatchOptions{})
	require.ErrorIs(t, err, interceptors.ErrNoSend)
}
