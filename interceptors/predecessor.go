package interceptors

import (
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/workflow"
)

// PredecessorHeader is the activity header that carries the stage scheduled
// before an activity in its workflow run.
const PredecessorHeader = "headstart-predecessor"

// InterceptWorkflow implements interceptor.WorkerInterceptor: it carries the
// predecessor stage to each activity in its header.
func (p *Profiler) InterceptWorkflow(ctx workflow.Context, next interceptor.WorkflowInboundInterceptor) interceptor.WorkflowInboundInterceptor {
	return withOutbound(next, func(out interceptor.WorkflowOutboundInterceptor) interceptor.WorkflowOutboundInterceptor {
		return &workflowOutbound{WorkflowOutboundInterceptorBase: interceptor.WorkflowOutboundInterceptorBase{Next: out}, p: p}
	})
}

// outboundInstaller is a workflow inbound interceptor whose only work is to
// put an outbound interceptor, made per workflow run, into the chain.
type outboundInstaller struct {
	interceptor.WorkflowInboundInterceptorBase
	wrap func(interceptor.WorkflowOutboundInterceptor) interceptor.WorkflowOutboundInterceptor
}

func withOutbound(next interceptor.WorkflowInboundInterceptor, wrap func(interceptor.WorkflowOutboundInterceptor) interceptor.WorkflowOutboundInterceptor) interceptor.WorkflowInboundInterceptor {
	return &outboundInstaller{WorkflowInboundInterceptorBase: interceptor.WorkflowInboundInterceptorBase{Next: next}, wrap: wrap}
}

func (i *outboundInstaller) Init(outbound interceptor.WorkflowOutboundInterceptor) error {
	return i.Next.Init(i.wrap(outbound))
}

// workflowOutbound tracks, per workflow run, which stage was scheduled last.
// Activities are scheduled in the same order on replay, so the headers it
// writes are deterministic.
type workflowOutbound struct {
	interceptor.WorkflowOutboundInterceptorBase
	p        *Profiler
	last     string // stage of the last activity scheduled
	lastPred string // the predecessor given to it
}

func (w *workflowOutbound) ExecuteActivity(ctx workflow.Context, activityType string, args ...any) workflow.Future {
	if w.p.excluded(activityType) {
		return w.Next.ExecuteActivity(ctx, activityType, args...)
	}
	stage := w.p.stageName(workflow.GetInfo(ctx).WorkflowType.Name, activityType)
	// Activities of one stage scheduled back to back (a fan-out) share the
	// predecessor of the first.
	pred := w.last
	if stage == w.last {
		pred = w.lastPred
	}
	w.last, w.lastPred = stage, pred
	if h := interceptor.WorkflowHeader(ctx); h != nil && pred != "" {
		h[PredecessorHeader] = w.p.predecessorPayload(pred)
	}
	return w.Next.ExecuteActivity(ctx, activityType, args...)
}

// maxCachedStages bounds the caches of stage names and header payloads.
const maxCachedStages = 4096

type stageKey struct{ workflowType, activityType string }

func predecessorFromHeader(h map[string]*commonpb.Payload) string {
	if pl := h[PredecessorHeader]; pl != nil && string(pl.GetMetadata()[converter.MetadataEncoding]) == converter.MetadataEncodingBinary {
		return string(pl.GetData())
	}
	return ""
}

// stageName is opts.StageName, cached.
func (p *Profiler) stageName(workflowType, activityType string) string {
	k := stageKey{workflowType, activityType}
	if s, ok := p.stageNames.Load(k); ok {
		return s.(string)
	}
	s := p.opts.StageName(workflowType, activityType)
	if p.cached.Add(1) <= maxCachedStages {
		p.stageNames.Store(k, s)
	}
	return s
}

// predecessorPayload returns the header payload naming a stage, cached. The
// SDK only reads header payloads, so one may be shared.
func (p *Profiler) predecessorPayload(stage string) *commonpb.Payload {
	if pl, ok := p.headers.Load(stage); ok {
		return pl.(*commonpb.Payload)
	}
	pl := &commonpb.Payload{
		Metadata: map[string][]byte{converter.MetadataEncoding: []byte(converter.MetadataEncodingBinary)},
		Data:     []byte(stage),
	}
	if p.cached.Add(1) <= maxCachedStages {
		p.headers.Store(stage, pl)
	}
	return pl
}
