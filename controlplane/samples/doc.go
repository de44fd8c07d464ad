// Package samples holds runnable sample workflows in the samples-go layout,
// one folder each, using only Headstart's public API.
package samples
