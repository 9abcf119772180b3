// Package secrets reads credentials from the environment (or from files the
// environment names) and masks every value it has read in log lines and
// error messages.
//
// As a helper it imports only other helpers under agents/internal and
// agents/config.
package secrets
