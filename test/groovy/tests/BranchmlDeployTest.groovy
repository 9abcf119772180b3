package branchml.tests

import branchml.harness.PipelineHarness
import org.junit.Test

import static org.junit.Assert.assertEquals
import static org.junit.Assert.assertFalse
import static org.junit.Assert.assertNull
import static org.junit.Assert.assertTrue

/** branchmlDeploy: change requests only plan. */
class BranchmlDeployTest extends StepTestBase {
    @Test
    void pullRequestCannotTurnPlanningOff() {
        h.env.putAll([CHANGE_ID: '8', CHANGE_TARGET: 'deploy-model', BRANCH_NAME: 'PR-8'])
        h.callStep('branchmlDeploy', [params: ['dry-run': false, canary: 'fast'], dryRun: false])
        assertEquals(true, agents.runs[0].params['dry-run'])
        assertEquals('fast', agents.runs[0].params.canary)
    }
}
