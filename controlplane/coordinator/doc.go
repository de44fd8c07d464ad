// Package coordinator is the prefetch loop: every interval the coordinator
// workflow takes a snapshot of the forecast and the pool (an activity),
// applies the prefetch rule (Decide) to each upcoming stage and reserves
// what it says, plans the replicas of the stages it replicates
// (PlanReplicas) and shapes them, and answers with the routes workers
// follow to reach the replicas. Config is what an operator configures of
// it; the rule and replica planning are pure functions with their own tests.
package coordinator
