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

    @Test
    void agentsNotOnPathAreDownloadedPinnedAndChecked() {
        agents.onPath = false
        h.env.BRANCH_NAME = 'deploy-model'
        h.callStep('branchmlDeploy')
        Map install = h.callsOf('sh').find { it.args.label?.startsWith('install branchml agents') }
        String pins = new File(ROOT, 'resources/branchml/agents.sha256').text
        String version = (pins =~ /(?m)^# version: (\S+)$/)[0][1]
        String sha = (pins =~ /(?m)^([0-9a-f]{64})\s+\S*linux-amd64\S*$/)[0][1]
        assertEquals("install branchml agents ${version}".toString(), install.args.label.toString())
        assertEquals("https://github.com/branchml/branchml/releases/download/${version}/branchml-agents-${version}-linux-amd64.tar.gz".toString(),
            install.env.BRANCHML_AGENTS_URL)
        assertEquals(sha, install.env.BRANCHML_AGENTS_SHA256)
        assertTrue(install.script.contains('sha256sum -c -'))
        assertFalse(install.script.contains(sha))
        Map run = agents.runs[0]
        assertEquals(TMP + "agents-${version}".toString(), run.env.PATH.split(':')[0])
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
    void aMultiLineSummaryGivesAOneLineCommitStatus() {
        // branchml-deploy's summary is its readable status text (agents/cli: a
        // multi-line summary is printed alone); a commit status is one line.
        agents.summaries['branchml-deploy'] = 'djia30: plan (dry run, nothing changed); recorded Succeeded; not serving\n' +
            'serving: nothing (no model server runs)\nrecorded status: Succeeded, stable v2'
        h.env.BRANCH_NAME = 'deploy-model'
        h.callStep('branchmlDeploy', [dryRun: true])
        assertEquals(['planning deploy', 'djia30: plan (dry run, nothing changed); recorded Succeeded; not serving'],
            h.callsOf('githubNotify').collect { it.args.description })
        assertTrue(h.currentBuild.description.startsWith('deploy (plan): ' + agents.summaries['branchml-deploy'] + '\n'))
        assertEquals(true, agents.runs[0].params['dry-run'])
    }
}
