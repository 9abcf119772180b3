// Package secrets reads credentials from the environment (or from files the
// environment names) and masks every value it has read in log lines and
// error messages. Credentials in URLs are masked too: the password of every
// "user:password@" in the configuration and the environment is registered
// (RegisterUserinfo), and every "scheme://user:password@" in any text is
// masked as "scheme://user:***@" (RedactURLs).
//
// As a helper it imports only other helpers under agents/internal and
// agents/config.
package secrets
