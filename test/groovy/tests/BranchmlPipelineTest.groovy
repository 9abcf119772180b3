package branchml.tests

import branchml.harness.AgentSimulator
import branchml.harness.PipelineHarness
import org.junit.Test

import static org.junit.Assert.assertEquals
import static org.junit.Assert.assertFalse
import static org.junit.Assert.assertNull
import static org.junit.Assert.assertTrue

/**
 * branchmlPipeline end to end on the harness, one build per branch name:
 * each stage branch, ds1, PR-7 (into training) and an unknown branch.
 */
class BranchmlPipelineTest extends StepTestBase {
    private static final Map STAGE_OF = ['build-components': ['build', 'branchml-build'],
                                         'kf-pipeline'     : ['pipeline', 'branchml-pipeline'],
                                         'training'        : ['train', 'branchml-train'],
                                         'deploy-model'    : ['deploy', 'branchml-deploy']]

    private static final Map CREDS = [
        build   : [[type: 'string', credentialsId: 'branchml-github-token', variable: 'GITHUB_TOKEN'],
                   [type: 'usernamePassword', credentialsId: 'branchml-registry', usernameVariable: 'REGISTRY_USERNAME', passwordVariable: 'REGISTRY_PASSWORD']],
        pipeline: [[type: 'string', credentialsId: 'branchml-github-token', variable: 'GITHUB_TOKEN'],
                   [type: 'string', credentialsId: 'branchml-kfp-token', variable: 'KFP_TOKEN']],
        train   : [[type: 'string', credentialsId: 'branchml-github-token', variable: 'GITHUB_TOKEN'],
                   [type: 'string', credentialsId: 'branchml-kfp-token', variable: 'KFP_TOKEN'],
                   [type: 'usernamePassword', credentialsId: 'branchml-kaggle', usernameVariable: 'KAGGLE_USERNAME', passwordVariable: 'KAGGLE_KEY']],
        deploy  : [[type: 'string', credentialsId: 'branchml-github-token', variable: 'GITHUB_TOKEN']],
    ]

    private static final Map SECRET_ENV = [
        build   : [GITHUB_TOKEN: 'ghp_secretGithubToken123', REGISTRY_USERNAME: 'robot$ml', REGISTRY_PASSWORD: 'registry-secret-789'],
        pipeline: [GITHUB_TOKEN: 'ghp_secretGithubToken123', KFP_TOKEN: 'kfp-secret-token-456'],
        train   : [GITHUB_TOKEN: 'ghp_secretGithubToken123', KFP_TOKEN: 'kfp-secret-token-456', KAGGLE_USERNAME: 'kaggle-user', KAGGLE_KEY: 'kaggle-key-secret-0ab'],
        deploy  : [GITHUB_TOKEN: 'ghp_secretGithubToken123'],
    ]

    @Test
    void eachStageBranchRunsItsAgentWithExactCommandParamsAndCredentials() {
        STAGE_OF.each { String branch, List sb ->
            setUp()
            String stage = sb[0], binary = sb[1]
            assertEquals(branch, 'SUCCESS', build(branch))
            assertStagesRequest(branch)
            assertEquals(2, agents.runs.size())
            Map run = agents.runs[1]
            assertEquals(binary, run.binary)
            assertEquals('run', run.command)
            assertEquals(contextParams(branch) + [config: 'branchml.yaml'], run.params)
            String pf = TMP + "${binary}-run-42.params.json"
            assertEquals('{"config":"branchml.yaml","workspace":"' + PipelineHarness.WORKSPACE + '","branch":"' + branch +
                '","commit":"' + SHA + '","build-url":"https://jenkins.example.com/job/ml/job/djia30/job/training/42/"}', h.files[pf])

            // The exact, constant-shaped shell command; the shell expands the variables.
            Map sh = h.callsOf('sh').find { it.script.startsWith(binary + ' ') }
            assertEquals(binary + ' run' + TAIL, sh.script)
            assertEquals([script: binary + ' run' + TAIL, returnStatus: true, label: "${binary} run".toString()], sh.args)
            assertEquals(pf, sh.env.BRANCHML_PARAMS)
            assertEquals(TMP + "${binary}-run-42.result.json".toString(), sh.env.BRANCHML_RESULT)
            assertEquals(TMP + "${binary}-run-42.error.json".toString(), sh.env.BRANCHML_ERROR_DETAILS)

            // Credentials: exactly the stage's bindings, into the variables the agents read.
            List bindings = h.callsOf('withCredentials').collect { it.args }
            assertEquals([[], CREDS[stage]], bindings)
            SECRET_ENV[stage].each { k, v -> assertEquals(k, v, sh.env[k]) }
            (['GITHUB_TOKEN', 'KFP_TOKEN', 'REGISTRY_USERNAME', 'REGISTRY_PASSWORD', 'KAGGLE_USERNAME', 'KAGGLE_KEY'] - SECRET_ENV[stage].keySet()).each {
                assertNull("${stage} must not get ${it}", sh.env[it])
            }
            Map stagesSh = h.callsOf('sh').find { it.script.startsWith('branchml config') }
            assertNull(stagesSh.env.GITHUB_TOKEN)

            // Published: description, junit, archived reports, statuses.
            assertEquals("${stage}: ${stage} done for ${SHA}\npipeline version: https://kfp.example.com/#/pipelines/details/p1/version/v1".toString(),
                h.currentBuild.description)
            assertEquals([[testResults: "build/${stage}-junit.xml".toString(), allowEmptyResults: true]], h.callsOf('junit').collect { it.args })
            assertEquals([[artifacts: "build/${stage}-plan.json".toString(), allowEmptyArchive: true, fingerprint: true]],
                h.callsOf('archiveArtifacts').collect { it.args })
            assertEquals([
                [context: "branchml/${stage}".toString(), status: 'PENDING', description: "running ${stage}".toString(),
                 targetUrl: 'https://jenkins.example.com/job/ml/job/djia30/job/training/42/', sha: SHA],
                [context: "branchml/${stage}".toString(), status: 'SUCCESS', description: "${stage} done for ${SHA}".toString(),
                 targetUrl: 'https://jenkins.example.com/job/ml/job/djia30/job/training/42/', sha: SHA],
                [context: 'branchml', status: 'SUCCESS', description: "ran ${stage}".toString(),
                 targetUrl: 'https://jenkins.example.com/job/ml/job/djia30/job/training/42/', sha: SHA],
            ], h.callsOf('githubNotify').collect { it.args })

            // Stage timeout and the pipeline's agent pod.
            assertEquals([stage], h.callsOf('stage').findAll { !(it.args in ['Resolve stages', 'Run stages']) }.collect { it.args })
            Map minutes = [build: 60, pipeline: 20, train: 360, deploy: 90]
            assertTrue(h.callsOf('timeout').collect { it.args }.contains([time: minutes[stage], unit: 'MINUTES']))
            Map p = h.callsOf('pipeline')[0].args
            assertEquals('branchml', p.agent.kubernetes.defaultContainer)
            assertEquals(new File(ROOT, 'resources/branchml/pod-template.yaml').text, p.agent.kubernetes.yaml)
            assertNoSecretLeaks()
        }
    }

    @Test
    void developmentBranchRunsNoStage() {
        assertEquals('SUCCESS', build('ds1'))
        assertStagesRequest('ds1')
        assertEquals(1, agents.runs.size())
        assertEquals('no branchml stage for ds1', h.currentBuild.description)
        assertEquals([], h.callsOf('githubNotify'))
        assertTrue(h.calls.contains([step: 'stage', args: 'Run stages', skipped: true]))
        assertTrue(h.callsOf('echo').collect { it.args }.contains('branchml: branch ds1 runs no stage (branches: in branchml.yaml); nothing to do'))
    }

    @Test
    void unknownBranchRunsNoStage() {
        assertEquals('SUCCESS', build('feature/x'))
        assertStagesRequest('feature/x')
        assertEquals(1, agents.runs.size())
        assertEquals('no branchml stage for feature/x', h.currentBuild.description)
    }

    @Test
    void pullRequestOnlyPlansTheTargetBranchStage() {
        String head = 'a1b2c3d4e5f60718293a4b5c6d7e8f9012345678'
        h.env.GIT_COMMIT = head
        assertEquals('SUCCESS', build('PR-7', [CHANGE_ID: '7', CHANGE_TARGET: 'training', CHANGE_BRANCH: 'ds1']))
        assertStagesRequest('training')
        Map run = agents.runs[1]
        assertEquals('branchml-train', run.binary)
        assertEquals([config: 'branchml.yaml', workspace: PipelineHarness.WORKSPACE, branch: 'training', commit: head,
                      'change-id': '7', 'build-url': 'https://jenkins.example.com/job/ml/job/djia30/job/training/42/',
                      'dry-run': true], run.params)
        assertEquals('train (plan): train planned for ' + head + '\npipeline version: https://kfp.example.com/#/pipelines/details/p1/version/v1',
            h.currentBuild.description)
        assertEquals(['planning train', 'train planned for ' + head, 'planned train'], h.callsOf('githubNotify').collect { it.args.description })
        assertEquals([head, head, head], h.callsOf('githubNotify').collect { it.args.sha })
        assertNoSecretLeaks()
    }

    @Test
    void failingAgentFailsTheBuildAndNotifies() {
        agents.failures['branchml-build'] = 1
        assertEquals('FAILURE', build('build-components'))
        String msg = 'branchml-build run failed (exit 1): push prepare-data: registry 127.0.0.1:5000 answered 401 Unauthorized\n' +
            'fix: check the registry credentials in REGISTRY_USERNAME/REGISTRY_PASSWORD'
        assertEquals([msg], h.callsOf('error').collect { it.args })
        assertEquals(msg, h.buildError.message)
        assertEquals('build: push prepare-data: registry answered 401 Unauthorized\n' +
            'build failed: push prepare-data: registry 127.0.0.1:5000 answered 401 Unauthorized\n' +
            'fix: check the registry credentials in REGISTRY_USERNAME/REGISTRY_PASSWORD', h.currentBuild.description)
        assertEquals([['branchml/build', 'PENDING'], ['branchml/build', 'FAILURE'], ['branchml', 'FAILURE']],
            h.callsOf('githubNotify').collect { [it.args.context, it.args.status] })
        assertEquals('push prepare-data: registry 127.0.0.1:5000 answered 401 Unauthorized',
            h.callsOf('githubNotify')[1].args.description)
        assertEquals(['failure'], h.callsOf('post').collect { it.args })
        assertEquals([], h.callsOf('junit'))
        assertNoSecretLeaks()
    }

    @Test
    void gateNotMetMarksTheBuildUnstable() {
        agents.failures['branchml-train'] = 3
        assertEquals('UNSTABLE', build('training'))
        assertEquals(1, h.callsOf('unstable').size())
        assertTrue(h.callsOf('unstable')[0].args.startsWith('branchml-train run stopped at a gate (exit 3): '))
        assertEquals(['unstable'], h.callsOf('post').collect { it.args })
        assertEquals(['branchml', 'FAILURE'], [h.callsOf('githubNotify')[2].args.context, h.callsOf('githubNotify')[2].args.status])
    }

    @Test
    void missingCredentialFailsBeforeTheAgentRuns() {
        h.credentials.remove('branchml-kfp-token')
        assertEquals('FAILURE', build('kf-pipeline'))
        assertEquals("Could not find credentials entry with ID 'branchml-kfp-token'", h.buildError.message)
        assertEquals(1, agents.runs.size())
    }

    @Test
    void perStageJenkinsfilesPinTheirStage() {
        ['build-components': 'branchml-build', 'kf-pipeline': 'branchml-pipeline', 'training': 'branchml-train',
         'deploy-model'    : 'branchml-deploy'].each { String file, String binary ->
            setUp()
            h.env.BRANCH_NAME = 'main'
            assertEquals('SUCCESS', h.runJenkinsfile(new File(ROOT, "Jenkinsfile.d/${file}.groovy")))
            assertEquals([binary], agents.runs.collect { it.binary })
        }
    }

}
