package branchml.tests

import org.junit.Test

import static org.junit.Assert.assertEquals
import static org.junit.Assert.assertNull

/** branchmlPipelineUpload: the pipeline stage's agent with an explicit commit. */
class BranchmlPipelineUploadTest extends StepTestBase {
    @Test
    void explicitCommitWinsOverGitCommit() {
        h.env.BRANCH_NAME = 'kf-pipeline'
        String head = '0123456789abcdef0123456789abcdef01234567'
        h.callStep('branchmlPipelineUpload', [commit: head])
        Map run = agents.runs[0]
        assertEquals('branchml-pipeline', run.binary)
        assertEquals([workspace: '/jenkins/workspace/djia30_training', branch: 'kf-pipeline', commit: head,
                      'build-url': 'https://jenkins.example.com/job/ml/job/djia30/job/training/42/'], run.params)
        assertEquals('kfp-secret-token-456', run.env.KFP_TOKEN)
        assertNull(run.env.REGISTRY_PASSWORD)
        assertEquals([head, head], agents.statuses.collect { it.commit })
    }
}
