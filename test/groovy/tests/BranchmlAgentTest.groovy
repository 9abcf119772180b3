package branchml.tests

import branchml.harness.PipelineHarness
import org.junit.Test

import static org.junit.Assert.assertEquals
import static org.junit.Assert.assertFalse
import static org.junit.Assert.assertNull
import static org.junit.Assert.assertTrue

/** branchmlAgent: argument checks, pinned download, no value in the shell string. */
class BranchmlAgentTest extends StepTestBase {
    @Test
    void badArgumentsAreRejectedWithTheAllowedOnes() {
        h.env.BRANCH_NAME = 'training'
        try {
            h.callStep('branchmlTrain', [paramz: [:]])
            assert false: 'expected an error'
        } catch (Exception e) {
            assertEquals("branchmlTrain: unknown argument(s) [paramz]; allowed: params, config, credentials, dryRun, commit", e.message)
        }
        try {
            h.callStep('branchmlAgent', [binary: 'rm', command: 'run'])
            assert false: 'expected an error'
        } catch (Exception e) {
            assertEquals("branchmlAgent: binary 'rm' is not a branchml agent; use one of branchml, branchml-build, branchml-pipeline, branchml-train, branchml-snapshot, branchml-deploy", e.message)
        }
        try {
            h.callStep('branchmlAgent', [binary: 'branchml', command: 'config stages; rm -rf /'])
            assert false: 'expected an error'
        } catch (Exception e) {
            assertTrue(e.message.startsWith("branchmlAgent: command 'config stages; rm -rf /' must be words"))
        }
        assertEquals([], agents.runs)
    }

    /** A pins file of another release: every expected value below is written out, not read from it. */
    private static final String PINS = '''# version: v9.8.7
# url: https://downloads.example.com/branchml/v9.8.7/
1111111111111111111111111111111111111111111111111111111111111111  branchml-agents-v9.8.7-linux-amd64.tar.gz
2222222222222222222222222222222222222222222222222222222222222222  branchml-agents-v9.8.7-linux-arm64.tar.gz
'''

    @Test
    void agentsNotOnPathAreDownloadedPinnedAndChecked() {
        agents.onPath = false
        h.resources['branchml/agents.sha256'] = PINS
        h.env.BRANCH_NAME = 'deploy-model'
        h.callStep('branchmlDeploy')
        Map install = h.callsOf('sh').find { it.args.label?.startsWith('install branchml agents') }
        assertEquals('install branchml agents v9.8.7', install.args.label)
        assertEquals(true, install.args.returnStatus)
        assertEquals('https://downloads.example.com/branchml/v9.8.7/branchml-agents-v9.8.7-linux-amd64.tar.gz', install.env.BRANCHML_AGENTS_URL)
        assertEquals('1' * 64, install.env.BRANCHML_AGENTS_SHA256)
        assertEquals(TMP + 'branchml-agents-v9.8.7-linux-amd64.tar.gz', install.env.BRANCHML_AGENTS_ARCHIVE)
        // No value in the script: it reads them from the environment.
        assertFalse(install.script.contains('1' * 64))
        assertFalse(install.script.contains('example.com'))
        assertEquals(TMP + 'agents-v9.8.7', agents.runs[0].env.PATH.split(':')[0])

        // arm64 nodes and a mirror of the release (library-level settings).
        setUp()
        agents.onPath = false
        h.resources['branchml/agents.sha256'] = PINS
        h.env.putAll([BRANCH_NAME: 'deploy-model', BRANCHML_AGENTS_ARCH: 'linux-arm64', BRANCHML_AGENTS_URL: 'https://nexus.example.com/raw/branchml'])
        h.callStep('branchmlDeploy')
        install = h.callsOf('sh').find { it.args.label?.startsWith('install branchml agents') }
        assertEquals('https://nexus.example.com/raw/branchml/branchml-agents-v9.8.7-linux-arm64.tar.gz', install.env.BRANCHML_AGENTS_URL)
        assertEquals('2' * 64, install.env.BRANCHML_AGENTS_SHA256)
    }

    @Test
    void aFailedDownloadOrDigestGivesTheStepsOwnErrorWithUrlAndDigest() {
        agents.onPath = false
        agents.download = 'missing'
        h.resources['branchml/agents.sha256'] = PINS
        h.env.BRANCH_NAME = 'build-components'
        assertEquals('FAILURE', build('build-components'))
        assertEquals('branchmlAgent: could not download the branchml agents v9.8.7 (linux-amd64) pinned in resources/branchml/agents.sha256 ' +
            'from https://downloads.example.com/branchml/v9.8.7/branchml-agents-v9.8.7-linux-amd64.tar.gz (see the curl message above); ' +
            'expected sha256 ' + '1' * 64 + '. Run the stages on the agents image (branchmlPipeline(image: …) or BRANCHML_AGENTS_IMAGE), ' +
            'or set BRANCHML_AGENTS_URL to a mirror that serves branchml-agents-v9.8.7-linux-amd64.tar.gz', h.buildError.message)
        assertEquals([], agents.runs.findAll { it.binary == 'branchml-build' })

        setUp()
        agents.onPath = false
        agents.download = 'tampered'
        h.resources['branchml/agents.sha256'] = PINS
        assertEquals('FAILURE', build('build-components'))
        assertEquals('branchmlAgent: https://downloads.example.com/branchml/v9.8.7/branchml-agents-v9.8.7-linux-amd64.tar.gz does not match ' +
            'the branchml agents v9.8.7 (linux-amd64) pinned in resources/branchml/agents.sha256: expected sha256 ' + '1' * 64 +
            ', got ' + 'ab' * 32 + '. Nothing was installed; check the mirror, or pin the archives of the release you serve (make release)',
            h.buildError.message)

        setUp()
        agents.onPath = false
        h.resources['branchml/agents.sha256'] = PINS
        h.env.BRANCHML_AGENTS_ARCH = 'windows-amd64'
        assertEquals('FAILURE', build('build-components'))
        assertEquals('branchmlAgent: resources/branchml/agents.sha256 pins no archive for windows-amd64; run on the agents image ' +
            '(branchmlPipeline(image: …)) or add the archive line with make release', h.buildError.message)
    }

    @Test
    void theShippedPinsNameTheReleaseOfTheirVersion() {
        // The digests themselves are checked against a release build by the
        // Go test of tools/release (TestPinnedDigestsMatchARelease).
        String pins = new File(ROOT, 'resources/branchml/agents.sha256').text
        String version = (pins =~ /(?m)^# version: (v\d+\.\d+\.\d+)$/)[0][1]
        assertEquals("https://github.com/branchml/branchml/releases/download/${version}/".toString(),
            (pins =~ /(?m)^# url: (\S+)$/)[0][1])
        List archives = (pins =~ /(?m)^[0-9a-f]{64}  (\S+)$/).collect { it[1] }
        assertEquals(["branchml-agents-${version}-linux-amd64.tar.gz".toString(), "branchml-agents-${version}-linux-arm64.tar.gz".toString()], archives)
    }

    @Test
    void parameterValuesNeverReachTheShellString() {
        h.env.BRANCH_NAME = 'training'
        String evil = '$(touch /tmp/pwned) `id` "; rm -rf / #'
        h.callStep('branchmlTrain', [params: [experiment: evil]])
        Map sh = h.callsOf('sh').find { it.script.startsWith('branchml-train ') }
        assertEquals('branchml-train run' + TAIL, sh.script)
        assertEquals(evil, agents.runs[0].params.experiment)
    }

    @Test
    void theAgentSetsTheStageStatusUnlessNotifyIsOff() {
        h.env.BRANCH_NAME = 'deploy-model'
        h.callStep('branchmlDeploy', [dryRun: true])
        assertNull(agents.runs[0].params['commit-status'])
        assertEquals([[context: 'branchml/deploy', state: 'pending', description: 'planning deploy', commit: SHA, url: BUILD_URL],
                      [context: 'branchml/deploy', state: 'success', description: 'deploy planned for ' + SHA, commit: SHA, url: BUILD_URL]],
            agents.statuses)

        setUp()
        h.env.BRANCH_NAME = 'deploy-model'
        h.callStep('branchmlAgent', [binary: 'branchml-deploy', notify: false])
        assertEquals('off', agents.runs[0].params['commit-status'])
        assertEquals([], agents.statuses)
    }

    @Test
    void anAgentKilledBeforeItsResultGetsAFailureStatus() {
        agents.ends['branchml-train'] = 'killed'
        assertEquals('FAILURE', build('training'))
        assertEquals('branchml-train run failed (exit 137); it wrote no error details, see the log above', h.buildError.message)
        assertEquals([[context: 'branchml/train', state: 'pending', description: 'running train', commit: SHA, url: BUILD_URL],
                      [context: 'branchml/train', state: 'failure', description: 'branchml-train run ended with exit 137 before writing its result',
                       commit: SHA, url: BUILD_URL]], agents.statuses)
        Map cs = agents.runs.find { it.command == 'commit-status' }
        assertEquals('ghp_secretGithubToken123', cs.env.GITHUB_TOKEN)
        assertEquals('branchml commit-status' + TAIL, h.callsOf('sh').find { it.script.startsWith('branchml commit-status') }.script)
    }
}
