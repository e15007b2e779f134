// Package chaos drives connpool through the faults of real networks with
// Toxiproxy, in process, in front of a loopback echo server: peers that
// close or reset idle conns, blackholes, replies cut short, latency and
// jitter, a backend that goes down and comes back, dials that hang, a herd
// of conns reaching their max lifetime, and a randomized run of all of
// them; and the records of a host name swapping between two replicas
// during that run, with and without the faults (swap_test.go). Every
// scenario ends by checking the pool's invariants: every request got its
// own reply or an error, never another request's bytes; open sockets
// never above MaxConns; one borrower per conn at a time; after Close
// nothing in use, nothing open, no goroutine or fd leaked; and the Stats
// add up.
//
// It holds only tests; it lives in its own module so that the core does
// not depend on Toxiproxy.
package chaos
