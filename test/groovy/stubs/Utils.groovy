package org.jenkinsci.plugins.pipeline.modeldefinition

/**
 * Test stand-in for pipeline-model-definition's Utils, of which the library
 * calls one @Whitelisted method: markStageSkippedForConditional(stageName)
 * tags the running stage as skipped (stage view and Blue Ocean show it
 * skipped, as for a `when` that is false). The harness sets hook to record
 * the call. Only scripts/groovy-test.sh uses it.
 */
class Utils {
    static Closure hook

    static void markStageSkippedForConditional(String stageName) {
        if (hook != null) { hook.call(stageName) }
    }
}
