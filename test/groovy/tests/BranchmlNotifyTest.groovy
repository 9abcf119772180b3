package branchml.tests

import branchml.harness.PipelineHarness
import org.junit.Test

import static org.junit.Assert.assertEquals
import static org.junit.Assert.assertFalse
import static org.junit.Assert.assertNull
import static org.junit.Assert.assertTrue

/** branchmlNotify: commit statuses through githubNotify. */
class BranchmlNotifyTest extends StepTestBase {
    @Test
    void githubNotifyFailureDoesNotFailTheStage() {
        h.githubNotifyFailure = 'No GitHub SCM source found'
        assertEquals('SUCCESS', build('deploy-model'))
        assertTrue(h.callsOf('echo').collect { it.args }.contains('branchml: could not set commit status branchml/deploy: No GitHub SCM source found'))
    }

    @Test
    void longDescriptionsAreCutToGithubsLimitAndStatusesChecked() {
        h.callStep('branchmlNotify', [context: 'branchml/train', status: 'FAILURE', description: 'x' * 200, commit: SHA])
        Map n = h.callsOf('githubNotify')[0].args
        assertEquals(140, n.description.length())
        assertTrue(n.description.endsWith('...'))
        assertEquals([context: 'branchml/train', status: 'FAILURE', description: 'x' * 137 + '...',
                      targetUrl: 'https://jenkins.example.com/job/ml/job/djia30/job/training/42/', sha: SHA], n)
        try {
            h.callStep('branchmlNotify', [context: 'branchml', status: 'OK'])
            assert false: 'expected an error'
        } catch (Exception e) {
            assertEquals("branchmlNotify: status 'OK' is not one of PENDING, SUCCESS, FAILURE, ERROR", e.message)
        }
    }

    @Test
    void notifyCanBeSwitchedOffByEnvironment() {
        h.env.BRANCHML_NOTIFY = 'false'
        assertEquals(false, h.callStep('branchmlNotify', [context: 'branchml', status: 'SUCCESS', description: 'ran train']))
        assertEquals([], h.callsOf('githubNotify'))
        assertEquals(['branchml: commit status branchml SUCCESS: ran train (not sent: BRANCHML_NOTIFY=false)'], h.callsOf('echo').collect { it.args })
    }
}
