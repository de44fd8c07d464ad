// Package ledger is the ledger workflow: a resource pool's capacity and the
// reservations held in it, changed by updates (reserve, release,
// set-capacity) that are validated before anything is written. Soft
// reservations are reclaimed when a hard request needs the room, and
// expired ones release themselves; neither hard reservations nor all
// reservations ever exceed capacity.
package ledger
