package branchml.tests

import branchml.harness.PipelineHarness
import org.junit.Test

import static org.junit.Assert.assertEquals
import static org.junit.Assert.assertFalse
import static org.junit.Assert.assertNull
import static org.junit.Assert.assertTrue

/** branchmlTrain: credential IDs from arguments. */
class BranchmlTrainTest extends StepTestBase {
    @Test
    void credentialIdsComeFromArgumentsAndEmptyLeavesOneOut() {
        h.credentials['team-kfp'] = 'team-kfp-secret'
        h.credentials['team-github'] = 'team-github-secret'
        h.env.BRANCH_NAME = 'training'
        h.callStep('branchmlTrain', [credentials: [kfp: 'team-kfp', kaggle: '', github: [id: 'team-github', file: true]]])
        assertEquals([[[type: 'file', credentialsId: 'team-github', variable: 'GITHUB_TOKEN_FILE'],
                       [type: 'string', credentialsId: 'team-kfp', variable: 'KFP_TOKEN']]],
            h.callsOf('withCredentials').collect { it.args })
        Map env = agents.runs[0].env
        assertEquals('team-kfp-secret', env.KFP_TOKEN)
        assertEquals('team-github-secret', h.files[env.GITHUB_TOKEN_FILE])
        assertNull(env.GITHUB_TOKEN)
        assertNull(env.KAGGLE_KEY)
    }
}
