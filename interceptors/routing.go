package interceptors

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/workflow"
)

// Router holds, per stage, the task queue its activities go to while the
// stage is replicated. Safe for concurrent use; whoever manages replicas
// (the coordinator, or Sync) sets and clears routes.
type Router struct {
	mu     sync.RWMutex
	routes map[string]string
}

// NewRouter returns a router with no routes: every activity stays on its queue.
func NewRouter() *Router { return &Router{routes: map[string]string{}} }

// Set routes a stage's activities to queue; an empty queue clears the route.
func (r *Router) Set(stage, queue string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if queue == "" {
		delete(r.routes, stage)
		return
	}
	r.routes[stage] = queue
}

// Route returns the queue for a stage, if it is routed.
func (r *Router) Route(stage string) (string, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	q, ok := r.routes[stage]
	return q, ok
}

// ReadyFunc reports whether a queue has replicas ready to take tasks, e.g.
// pollers seen through DescribeTaskQueue.
type ReadyFunc func(ctx context.Context, queue string) (bool, error)

// Sync makes the routes exactly the stages in replicas (stage → replica
// queue) whose queue has replicas ready: every other stage's activities
// stay on their own queue. On an error of ready, the routes are left as
// they were.
func (r *Router) Sync(ctx context.Context, replicas map[string]string, ready ReadyFunc) error {
	stages := make([]string, 0, len(replicas))
	for s := range replicas {
		stages = append(stages, s)
	}
	sort.Strings(stages)
	next := map[string]string{}
	for _, s := range stages {
		ok, err := ready(ctx, replicas[s])
		if err != nil {
			return err
		}
		if ok {
			next[s] = replicas[s]
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.routes = next
	return nil
}

// Clear removes every route.
func (r *Router) Clear() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.routes = map[string]string{}
}

// RoutingOptions configure NewRouting.
type RoutingOptions struct {
	// StageName names stages; it must match the profiler's. If not set, DefaultStageName.
	StageName func(workflowType, activityType string) string
}

// NewRouting returns the worker interceptor that sends a replicated stage's
// activities to its replica queue. Each decision is recorded in the
// workflow's history with a mutable side effect (a marker only when a
// stage's route changes), so replay takes the same route whatever the router
// holds then.
func NewRouting(r *Router, opts RoutingOptions) interceptor.WorkerInterceptor {
	if opts.StageName == nil {
		opts.StageName = DefaultStageName
	}
	return &routing{router: r, opts: opts}
}

type routing struct {
	interceptor.WorkerInterceptorBase
	router *Router
	opts   RoutingOptions
}

func (r *routing) InterceptWorkflow(ctx workflow.Context, next interceptor.WorkflowInboundInterceptor) interceptor.WorkflowInboundInterceptor {
	return withOutbound(next, func(out interceptor.WorkflowOutboundInterceptor) interceptor.WorkflowOutboundInterceptor {
		return &routingOutbound{WorkflowOutboundInterceptorBase: interceptor.WorkflowOutboundInterceptorBase{Next: out}, r: r}
	})
}

type routingOutbound struct {
	interceptor.WorkflowOutboundInterceptorBase
	r *routing
}

// RouteMarkerPrefix begins the ID of the mutable side effect that records a stage's route.
const RouteMarkerPrefix = "headstart-route:"

func (o *routingOutbound) ExecuteActivity(ctx workflow.Context, activityType string, args ...any) workflow.Future {
	stage := o.r.opts.StageName(workflow.GetInfo(ctx).WorkflowType.Name, activityType)
	v := workflow.MutableSideEffect(ctx, RouteMarkerPrefix+stage, func(workflow.Context) any {
		q, _ := o.r.router.Route(stage)
		return q
	}, func(a, b any) bool { return a == b })
	var queue string
	if err := v.Get(&queue); err == nil && queue != "" {
		opts := workflow.GetActivityOptions(ctx)
		opts.TaskQueue = queue
		ctx = workflow.WithActivityOptions(ctx, opts)
	}
	return o.Next.ExecuteActivity(ctx, activityType, args...)
}

// PollersReady is a ReadyFunc that counts a queue's activity pollers seen in
// the last 10 seconds through DescribeTaskQueue: replicas are ready when at
// least one polls.
func PollersReady(c client.Client, namespace string) ReadyFunc {
	return func(ctx context.Context, queue string) (bool, error) {
		resp, err := c.WorkflowService().DescribeTaskQueue(ctx, &workflowservice.DescribeTaskQueueRequest{
			Namespace:     namespace,
			TaskQueue:     &taskqueuepb.TaskQueue{Name: queue, Kind: enumspb.TASK_QUEUE_KIND_NORMAL},
			TaskQueueType: enumspb.TASK_QUEUE_TYPE_ACTIVITY,
		})
		if err != nil {
			return false, fmt.Errorf("describe task queue %s: %w", queue, err)
		}
		for _, p := range resp.GetPollers() {
			if time.Since(p.GetLastAccessTime().AsTime()) < 10*time.Second {
				return true, nil
			}
		}
		return false, nil
	}
}
