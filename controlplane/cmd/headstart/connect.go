package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/headstart-dev/headstart/controlplane/config"
)

// The waits between tries of untilReachable: doubling from first to at most last.
const (
	firstRetry = time.Second
	lastRetry  = 15 * time.Second
)

// untilReachable calls try until it succeeds, fails with an error no retry
// fixes (config.Retryable), or timeout has passed since the first try, and
// returns try's last error. what names the step in the waits it logs
// (the caller names it in the error it returns). Between tries it waits, saying so on log: a
// control worker started while its server restarts, or before it is up,
// waits for it instead of exiting.
func untilReachable(ctx context.Context, timeout time.Duration, log io.Writer, what string, try func(context.Context) error) error {
	deadline := time.Now().Add(timeout)
	wait := firstRetry
	for {
		err := try(ctx)
		if err == nil || !config.Retryable(err) {
			return err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("gave up after %v (temporal.connect_timeout): %w", timeout, err)
		}
		wait = min(wait, left)
		fmt.Fprintf(log, "headstart worker: %s: %v; trying again in %v\n", what, err, wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, lastRetry)
	}
}

// dialServer connects to the server of copts, waiting for it as untilReachable does.
func dialServer(ctx context.Context, patience time.Duration, log io.Writer, copts client.Options) (client.Client, error) {
	var c client.Client
	err := untilReachable(ctx, patience, log, "dial "+copts.HostPort, func(ctx context.Context) (err error) {
		c, err = client.DialContext(ctx, copts)
		return err
	})
	if err != nil {
		return nil, config.ExplainDial(copts.HostPort, err)
	}
	return c, nil
}

// startWorker starts a worker that newWorker builds, waiting for the server
// as untilReachable does. A worker's Start is done once, failed or not: each
// try builds another.
func startWorker(ctx context.Context, patience time.Duration, log io.Writer, what string, newWorker func() (worker.Worker, error)) (worker.Worker, error) {
	var w worker.Worker
	err := untilReachable(ctx, patience, log, "start "+what, func(context.Context) error {
		try, err := newWorker()
		if err != nil {
			return err
		}
		if err := try.Start(); err != nil {
			try.Stop()
			return err
		}
		w = try
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", what, err)
	}
	return w, nil
}
