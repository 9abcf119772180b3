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
            // Statuses: the agent's own (pending, then the outcome); none from Groovy.
            assertEquals([[context: "branchml/${stage}".toString(), state: 'pending', description: "running ${stage}".toString(), commit: SHA, url: BUILD_URL],
                          [context: "branchml/${stage}".toString(), state: 'success', description: "${stage} done for ${SHA}".toString(), commit: SHA, url: BUILD_URL]],
                agents.statuses)
            assertEquals(2, agents.runs.size())

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
        assertEquals([], agents.statuses)
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
        assertEquals(['planning train', 'train planned for ' + head], agents.statuses.collect { it.description })
        assertEquals([head, head], agents.statuses.collect { it.commit })
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
        assertEquals([['branchml/build', 'pending'], ['branchml/build', 'failure']], agents.statuses.collect { [it.context, it.state] })
        assertEquals('push prepare-data: registry 127.0.0.1:5000 answered 401 Unauthorized', agents.statuses[1].description)
        assertEquals([], h.callsOf('post').collect { it.args })
        assertEquals([], h.callsOf('junit'))
        assertNoSecretLeaks()
    }

    @Test
    void gateNotMetMarksTheBuildUnstable() {
        agents.failures['branchml-train'] = 3
        assertEquals('UNSTABLE', build('training'))
        assertEquals(1, h.callsOf('unstable').size())
        assertTrue(h.callsOf('unstable')[0].args.startsWith('branchml-train run stopped at a gate (exit 3): '))
        assertEquals(['branchml/train', 'failure'], [agents.statuses[1].context, agents.statuses[1].state])
        assertTrue(agents.statuses[1].description.startsWith('gate not met: '))
    }

    @Test
    void aGateNotMetOnASharedBranchSkipsTheStagesAfterIt() {
        agents.branches['training'] = ['train', 'deploy']
        agents.failures['branchml-train'] = 3
        assertEquals('UNSTABLE', build('training'))
        assertEquals(['branchml', 'branchml-train'], agents.runs.collect { it.binary })
        assertEquals(['Resolve stages', 'Run stages', 'train', 'deploy'], h.callsOf('stage').collect { it.args })
        assertEquals(['deploy'], h.callsOf('markStageSkippedForConditional').collect { it.args })
        assertTrue(h.callsOf('echo').collect { it.args }.contains('branchml: deploy skipped: train stopped at a gate (exit 3)'))
        assertTrue(h.currentBuild.description.endsWith('\ndeploy skipped: train stopped at a gate (exit 3)'))
        // Without the gate both run, in order.
        setUp()
        agents.branches['training'] = ['train', 'deploy']
        assertEquals('SUCCESS', build('training'))
        assertEquals(['branchml', 'branchml-train', 'branchml-deploy'], agents.runs.collect { it.binary })
        assertEquals([], h.callsOf('markStageSkippedForConditional'))
    }

    @Test
    void anAbortedOrTimedOutStageGetsAnErrorStatusInPost() {
        agents.ends['branchml-deploy'] = 'aborted'
        assertEquals('ABORTED', build('deploy-model'))
        assertEquals(['aborted'], h.callsOf('post').collect { it.args })
        assertEquals([[context: 'branchml/deploy', state: 'pending', description: 'running deploy', commit: SHA, url: BUILD_URL],
                      [context: 'branchml/deploy', state: 'error', description: 'deploy aborted or timed out (stage timeout 90 min, build 480 min)',
                       commit: SHA, url: BUILD_URL]], agents.statuses)
        // Aborted before any stage ran: nothing to report.
        setUp()
        agents.ends['branchml'] = 'aborted'
        assertEquals('ABORTED', build('deploy-model'))
        assertEquals([], agents.statuses)
    }

    @Test
    void aPushOfOnlyTheStagesOwnWriteBacksRunsNothing() {
        h.currentBuild.changeSets = [[items: [[msg: 'branchml deploy: Succeeded djia30 v2 for 3f9a1c2b4d5e', commitId: 'c1'],
                                              [msg: 'branchml deploy: Progressing djia30 v2 for 3f9a1c2b4d5e', commitId: 'c2']]]]
        assertEquals('SUCCESS', build('deploy-model'))
        assertEquals(['branchml'], agents.runs.collect { it.binary })
        assertEquals('only write-backs of deploy: nothing to do', h.currentBuild.description)
        assertTrue(h.calls.contains([step: 'stage', args: 'Run stages', skipped: true]))

        // The promotion PR merged by rebase: the same author, another stage's message.
        setUp()
        h.currentBuild.changeSets = [[items: [[msg: 'branchml promote: djia30 v2 for 3f9a1c2b4d5e', commitId: 'c3']]]]
        assertEquals('SUCCESS', build('deploy-model'))
        assertEquals(['branchml', 'branchml-deploy'], agents.runs.collect { it.binary })

        // A person's commit among the write-backs.
        setUp()
        h.currentBuild.changeSets = [[items: [[msg: 'branchml train: run r-1 Succeeded for 3f9a1c2b4d5e', commitId: 'c4'],
                                              [msg: 'Tune the learning rate', commitId: 'c5']]]]
        assertEquals('SUCCESS', build('training'))
        assertEquals(['branchml', 'branchml-train'], agents.runs.collect { it.binary })

        // Started by hand (Build Now): runs whatever the push held.
        setUp()
        h.currentBuild.changeSets = [[items: [[msg: 'branchml deploy: Succeeded djia30 v2 for 3f9a1c2b4d5e', commitId: 'c1']]]]
        h.currentBuild.buildCauses = [[_class: 'hudson.model.Cause$UserIdCause', shortDescription: 'Started by user ops']]
        assertEquals('SUCCESS', build('deploy-model'))
        assertEquals(['branchml', 'branchml-deploy'], agents.runs.collect { it.binary })
    }

    @Test
    void imageComesFromTheArgumentOrTheLibrarySetting() {
        String template = new File(ROOT, 'resources/branchml/pod-template.yaml').text
        String shipped = (template =~ /(?m)^      image: (\S+)$/)[0][1]
        h.env.BRANCHML_AGENTS_IMAGE = 'registry.example.com/platform/branchml-agents:v1'
        assertEquals('SUCCESS', build('training'))
        assertEquals(template.replace('image: ' + shipped, 'image: registry.example.com/platform/branchml-agents:v1'),
            h.callsOf('pipeline')[0].args.agent.kubernetes.yaml)

        setUp()
        h.env.BRANCHML_AGENTS_IMAGE = 'registry.example.com/platform/branchml-agents:v1'
        h.env.BRANCH_NAME = 'training'
        h.callStep('branchmlPipeline', [image: '127.0.0.1:5000/branchml/agents@sha256:' + 'c' * 64])
        assertEquals(template.replace('image: ' + shipped, 'image: 127.0.0.1:5000/branchml/agents@sha256:' + 'c' * 64),
            h.callsOf('pipeline')[0].args.agent.kubernetes.yaml)

        setUp()
        h.env.BRANCH_NAME = 'training'
        try {
            h.callStep('branchmlPipeline', [image: 'x:1', container: 'agents'])
            assert false: 'expected an error'
        } catch (Exception e) {
            assertEquals("branchmlPipeline: the pod template branchml/pod-template.yaml has no container 'agents' with an image: line; " +
                'give container: the name of the agents container', e.message)
        }
    }

    @Test
    void missingCredentialFailsBeforeTheAgentRuns() {
        h.credentials.remove('branchml-kfp-token')
        assertEquals('FAILURE', build('kf-pipeline'))
        assertEquals("Could not find credentials entry with ID 'branchml-kfp-token'", h.buildError.message)
        assertEquals(1, agents.runs.size())
    }

    @Test
    void theExamplesJenkinsfileRunsTheBranchsStage() {
        h.env.BRANCH_NAME = 'training'
        assertEquals('SUCCESS', h.runJenkinsfile(new File(ROOT, 'examples/djia30/Jenkinsfile')))
        assertEquals(['branchml', 'branchml-train'], agents.runs.collect { it.binary })
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
