package branchml.tests

import org.junit.Test

import static org.junit.Assert.assertEquals

/** branchmlBuild: the build stage's agent, params and credentials when called directly. */
class BranchmlBuildTest extends StepTestBase {
    @Test
    void dryRunArgumentPlansAndExtraParamsPassThrough() {
        h.env.BRANCH_NAME = 'build-components'
        Map out = h.callStep('branchmlBuild', [dryRun: true, params: [component: ['train', 'serve']], config: 'ml/branchml.yaml']) as Map
        assertEquals(0, out.exitCode)
        assertEquals(true, out.ok)
        assertEquals('build planned for ' + SHA, out.result.summary)
        assertEquals('{"config":"ml/branchml.yaml","workspace":"/jenkins/workspace/djia30_training","branch":"build-components",' +
            '"commit":"' + SHA + '","build-url":"https://jenkins.example.com/job/ml/job/djia30/job/training/42/",' +
            '"component":["train","serve"],"dry-run":true}', h.files[TMP + 'branchml-build-run-42.params.json'])
        assertEquals('branchml-build run' + TAIL, h.callsOf('sh')[1].script)
        assertEquals([[[type: 'string', credentialsId: 'branchml-github-token', variable: 'GITHUB_TOKEN'],
                       [type: 'usernamePassword', credentialsId: 'branchml-registry', usernameVariable: 'REGISTRY_USERNAME', passwordVariable: 'REGISTRY_PASSWORD']]],
            h.callsOf('withCredentials').collect { it.args })
        assertEquals(['planning build', 'build planned for ' + SHA], agents.statuses.collect { it.description })
    }
}
