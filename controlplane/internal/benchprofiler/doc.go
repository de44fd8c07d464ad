// Package benchprofiler holds `make bench-profiler`: the drop-in profiler's
// cost per activity against no interceptor and the SDK's OpenTelemetry
// tracing interceptor. It lives in the control plane's module so that the
// root module, which a user's worker requires, does not require
// OpenTelemetry.
package benchprofiler
