// Command starter submits pipeline runs at a varying rate: arrivals are a
// Poisson process whose rate swings sinusoidally around -rate, with occasional
// bursts, and each run's size is drawn around -scale. It stops after -count
// runs (0: until interrupted).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"math"
	"math/rand/v2"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/headstart-dev/headstart/controlplane/samples/pipeline"
)

func main() {
	address := flag.String("address", client.DefaultHostPort, "Temporal frontend host:port")
	namespace := flag.String("namespace", client.DefaultNamespace, "Temporal namespace")
	count := flag.Int("count", 0, "runs to start; 0 starts until interrupted")
	rate := flag.Float64("rate", 6, "mean runs per minute")
	period := flag.Duration("period", 5*time.Minute, "period of the rate's swing")
	scale := flag.Float64("scale", 1, "mean size of a run (1: 16 MiB extract, 4 shards, 400 rounds, 64 MiB train)")
	wait := flag.Bool("wait", false, "wait for each run to finish before starting the next")
	seed := flag.Uint64("seed", uint64(time.Now().UnixNano()), "random seed")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := client.DialContext(ctx, client.Options{HostPort: *address, Namespace: *namespace})
	if err != nil {
		log.Fatalf("dial %s: %v", *address, err)
	}
	defer c.Close()

	rng := rand.New(rand.NewPCG(*seed, 0x9e3779b97f4a7c15))
	begin := time.Now()
	for i := 0; *count == 0 || i < *count; i++ {
		in := sizedInput(rng, *scale)
		id := fmt.Sprintf("pipeline-%d-%d", begin.Unix(), i)
		run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: pipeline.TaskQueue}, pipeline.Pipeline, in)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Printf("start %s: %v", id, err)
		} else {
			log.Printf("started %s: extract %d MiB, %d shards × %d rounds, train %d MiB", id, in.ExtractMiB, in.Shards, in.TransformRounds, in.TrainMiB)
			if *wait {
				if err := run.Get(ctx, nil); err != nil && ctx.Err() == nil {
					log.Printf("%s: %v", id, err)
				}
			}
		}
		if *count != 0 && i == *count-1 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(nextGap(rng, time.Since(begin), *rate, *period)):
		}
	}
}

// nextGap draws the time to the next arrival: exponential with a rate that
// swings between 0.25× and 1.75× the mean over each period; one arrival in ten
// starts a burst of back-to-back runs.
func nextGap(rng *rand.Rand, elapsed time.Duration, perMinute float64, period time.Duration) time.Duration {
	if rng.IntN(10) == 0 {
		return 200 * time.Millisecond
	}
	phase := 2 * math.Pi * elapsed.Seconds() / period.Seconds()
	r := perMinute / 60 * (1 + 0.75*math.Sin(phase))
	return time.Duration(rng.ExpFloat64() / r * float64(time.Second))
}

// sizedInput draws a run's size: log-normal around scale, so most runs are
// near it and a few are several times larger.
func sizedInput(rng *rand.Rand, scale float64) pipeline.Input {
	size := scale * math.Exp(0.5*rng.NormFloat64())
	clamp := func(x float64, lo, hi int) int { return max(lo, min(hi, int(math.Round(x)))) }
	return pipeline.Input{
		ExtractMiB:      clamp(16*size, 1, 1024),
		Shards:          clamp(4*size, 1, 64),
		TransformRounds: clamp(400*size, 1, 100000),
		TrainMiB:        clamp(64*size, 1, 4096),
		Seed:            rng.Uint64(),
	}
}
