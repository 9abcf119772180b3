package branchml.tests

import branchml.harness.PipelineHarness
import org.junit.Test

import static org.junit.Assert.assertEquals
import static org.junit.Assert.assertFalse
import static org.junit.Assert.assertTrue

/** branchmlNotify: one commit status through `branchml commit-status` (the agents' forge), no notify plugin. */
class BranchmlNotifyTest extends StepTestBase {
    @Test
    void setsTheStatusThroughTheAgentWithTheGithubCredential() {
        assertEquals(true, h.callStep('branchmlNotify', [context: 'branchml/train', status: 'ERROR', description: 'train aborted or timed out']))
        Map run = agents.runs[0]
        assertEquals(['branchml', 'commit-status'], [run.binary, run.command])
        assertEquals([context: 'branchml/train', state: 'error', description: 'train aborted or timed out', commit: SHA,
                      workspace: PipelineHarness.WORKSPACE, 'build-url': BUILD_URL], run.params)
        assertEquals('ghp_secretGithubToken123', run.env.GITHUB_TOKEN)
        assertEquals([[context: 'branchml/train', state: 'error', description: 'train aborted or timed out', commit: SHA, url: BUILD_URL]], agents.statuses)
        assertEquals('branchml commit-status' + TAIL, h.callsOf('sh').find { it.script.startsWith('branchml commit-status') }.script)
        assertNoSecretLeaks()
    }

    @Test
    void aStatusThatCannotBeSetDoesNotFailTheBuild() {
        agents.failures['branchml'] = 1
        assertEquals(false, h.callStep('branchmlNotify', [context: 'branchml/deploy', status: 'FAILURE', commit: SHA]))
        assertTrue(h.callsOf('echo').collect { it.args }.any { it.startsWith('branchml: could not set commit status branchml/deploy: branchml commit-status failed (exit 1)') })
        assertEquals(null, h.currentBuild.result)
        // A missing github credential is no failure either.
        setUp()
        h.credentials.remove('branchml-github-token')
        assertEquals(false, h.callStep('branchmlNotify', [context: 'branchml/deploy', status: 'FAILURE']))
        assertTrue(h.callsOf('echo').collect { it.args }.contains("branchml: could not set commit status branchml/deploy: Could not find credentials entry with ID 'branchml-github-token'"))
    }

    @Test
    void statusesAreCheckedAndCanBeSwitchedOffByEnvironment() {
        try {
            h.callStep('branchmlNotify', [context: 'branchml', status: 'OK'])
            assert false: 'expected an error'
        } catch (Exception e) {
            assertEquals("branchmlNotify: status 'OK' is not one of PENDING, SUCCESS, FAILURE, ERROR", e.message)
        }
        h.env.BRANCHML_NOTIFY = 'false'
        assertEquals(false, h.callStep('branchmlNotify', [context: 'branchml/train', status: 'SUCCESS', description: 'ran train']))
        assertEquals([], agents.runs)
        assertEquals(['branchml: commit status branchml/train SUCCESS: ran train (not sent: BRANCHML_NOTIFY=false)'], h.callsOf('echo').collect { it.args })
        // The stage agents are told too.
        h.env.BRANCH_NAME = 'training'
        h.callStep('branchmlTrain')
        assertEquals('off', agents.runs[0].params['commit-status'])
        assertEquals([], agents.statuses)
    }
}
