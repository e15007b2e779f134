// Package integration proves connpool with the clients Go engineers use,
// against real servers on loopback: gRPC, PostgreSQL through pgx and
// lib/pq, MariaDB through go-sql-driver/mysql, and Redis used directly and
// through go-redis, and net/http. It holds only tests and examples; it
// lives in its own module so that the core does not depend on these
// clients. clients_test.go runs each client twice: with its own defaults,
// as a user who did not read docs/clients.md would (fast, or a clear
// error within the wait), and with the settings that page gives (fast).
//
// Tests that need PostgreSQL (127.0.0.1:5432, user postgres, database
// test), MariaDB (127.0.0.1:3306, root with no password, database test) or
// Redis (127.0.0.1:6379) skip with a message when the service does not
// answer, and fail instead when CONNPOOL_REQUIRE_SERVICES=1.
package integration
