package branchml.tests

import branchml.harness.AgentSimulator
import branchml.harness.PipelineHarness
import org.junit.Before

import static org.junit.Assert.assertEquals
import static org.junit.Assert.assertFalse

/** Shared set-up of the step tests: the library loaded, the agents simulated, four credentials. */
abstract class StepTestBase {
    protected static final File ROOT = new File(System.getenv('BRANCHML_REPO_ROOT') ?: '.')
    protected static final String SHA = '3f9a1c2b4d5e6f708192a3b4c5d6e7f8091a2b3c'
    protected static final String TMP = PipelineHarness.WORKSPACE_TMP + '/branchml/'
    protected static final String BUILD_URL = 'https://jenkins.example.com/job/ml/job/djia30/job/training/42/'
    protected static final String TAIL = ' --params "$BRANCHML_PARAMS" --result "$BRANCHML_RESULT" --error-details "$BRANCHML_ERROR_DETAILS"'

    protected PipelineHarness h
    protected AgentSimulator agents

    @Before
    void setUp() {
        h = new PipelineHarness(ROOT).loadLibrary()
        agents = new AgentSimulator(h)
        h.credentials['branchml-github-token'] = 'ghp_secretGithubToken123'
        h.credentials['branchml-kfp-token'] = 'kfp-secret-token-456'
        h.credentials['branchml-registry'] = [username: 'robot$ml', password: 'registry-secret-789']
        h.credentials['branchml-kaggle'] = [username: 'kaggle-user', password: 'kaggle-key-secret-0ab']
        h.env.GIT_COMMIT = SHA
    }

    protected String build(String branch, Map prEnv = [:]) {
        h.env.BRANCH_NAME = branch
        h.env.putAll(prEnv)
        return h.runJenkinsfile(new File(ROOT, 'Jenkinsfile.d/Jenkinsfile.groovy'))
    }

    protected Map contextParams(String branch) {
        return [workspace: PipelineHarness.WORKSPACE, branch: branch, commit: SHA,
                'build-url': 'https://jenkins.example.com/job/ml/job/djia30/job/training/42/']
    }

    protected void assertStagesRequest(String branch) {
        Map r = agents.runs[0]
        assertEquals('branchml', r.binary)
        assertEquals('config stages', r.command)
        assertEquals([branch: branch, config: 'branchml.yaml'], r.params)
        assertEquals('{"branch":"' + branch + '","config":"branchml.yaml"}',
            h.files[TMP + 'branchml-config-stages-42.params.json'])
    }

    protected void assertNoSecretLeaks() {
        List<String> secrets = h.secretValues()
        h.callsOf('sh').each { Map c ->
            secrets.each { s -> assertFalse("secret in sh script: ${c.script}", c.script.contains(s)) }
        }
        h.calls.findAll { it.step in ['echo', 'error', 'unstable', 'writeFile', 'withEnv'] }.each { Map c ->
            secrets.each { s -> assertFalse("secret in ${c.step}: ${c.args}", c.args.toString().contains(s)) }
        }
        h.files.each { path, text ->
            if (!path.contains('/secretFiles/')) {
                secrets.each { s -> assertFalse("secret in file ${path}", text.contains(s)) }
            }
        }
        secrets.each { s -> assertFalse((h.currentBuild.description ?: '').contains(s)) }
    }

}
