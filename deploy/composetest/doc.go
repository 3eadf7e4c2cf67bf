// Package composetest holds the tests of Rampart's container deployment:
// docker-compose.yml loaded with the compose-spec library (the parser behind
// `docker compose`), the Dockerfile parsed with BuildKit's parser, the NATS
// configuration run by a real nats-server, and the PostgreSQL init script
// and devstack's external mode run against the machine's PostgreSQL and
// NATS (RAMPART_TEST_POSTGRES_DSN, RAMPART_TEST_NATS_URL). There is no
// Docker engine on our machines; these are what can be proven without one.
package composetest
