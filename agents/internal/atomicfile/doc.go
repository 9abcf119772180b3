// Package atomicfile writes files so that readers see either the old content
// or the new, never a half-written file: write to a temporary file in the
// same directory, sync, then rename over the target.
//
// As a helper it imports only other helpers under agents/internal and
// agents/config.
package atomicfile
