package branchml.harness

/**
 * Decides whether Jenkins builds a branch or pull request automatically,
 * from the build strategies a Job DSL script gave a branch source, the way
 * the plugins decide it (read from their sources at the versions of
 * plugins.txt):
 *
 *  - branch-api MultiBranchProject: any of the source's strategies says build;
 *  - basic-branch-build-strategies: buildAllBranches (all of, none: no),
 *    buildAnyBranches (any of), buildNoneBranches (none of; empty: no),
 *    buildRegularBranches (not a change request, not a tag),
 *    buildChangeRequests (a change request; with ignoreTargetOnlyChanges
 *    not when only its target moved; with ignoreUntrustedChanges not an
 *    untrusted one), buildNamedBranches with exact filters (regular
 *    branches only), skipInitialBuildOnFirstBranchIndexing (only when the
 *    head was seen before at another revision: never for a newly
 *    discovered branch or pull request);
 *  - ignore-committer-strategy: the author e-mails of the commits since the
 *    last built revision; with allowBuildIfNotExcludedAuthor, build when one
 *    author is not ignored, otherwise not.
 *
 * An event is a map: name, changeRequest (boolean), tag (boolean), current,
 * lastBuilt, lastSeen (revisions; null: none), authors (the e-mails of the
 * commits since lastBuilt), targetOnly (only the change request's target
 * moved), trusted (default true).
 */
class BuildStrategies {
    static boolean build(DslNode buildStrategies, Map event) {
        return buildStrategies.children.any { decide(it, event) }
    }

    static boolean decide(DslNode s, Map e) {
        switch (s.name) {
            case 'buildAllBranches':
                List<DslNode> all = nested(s)
                return !all.isEmpty() && all.every { decide(it, e) }
            case 'buildAnyBranches':
                return nested(s).any { decide(it, e) }
            case 'buildNoneBranches':
                List<DslNode> none = nested(s)
                return !none.isEmpty() && !none.any { decide(it, e) }
            case 'buildRegularBranches':
                return !e.changeRequest && !e.tag
            case 'buildChangeRequests':
                if (!e.changeRequest) { return false }
                if (s.value('ignoreTargetOnlyChanges') && e.targetOnly) { return false }
                if (s.value('ignoreUntrustedChanges') && e.trusted == false) { return false }
                return true
            case 'buildNamedBranches':
                if (e.changeRequest || e.tag) { return false }
                return s.find('filters').children.any { DslNode f ->
                    if (f.name != 'exact') { throw new IllegalArgumentException("name filter ${f.name} is not simulated") }
                    f.value('caseSensitive') ? f.value('name') == e.name : (f.value('name') as String).equalsIgnoreCase(e.name as String)
                }
            case 'skipInitialBuildOnFirstBranchIndexing':
                return e.lastSeen != null && e.lastSeen != e.current
            case 'ignoreCommitterStrategy':
                List<String> ignored = (s.value('ignoredAuthors') as String).split(',').collect { it.trim().toLowerCase() }
                boolean allow = s.value('allowBuildIfNotExcludedAuthor') as boolean
                for (String a in (e.authors ?: [])) {
                    boolean isIgnored = a.trim().toLowerCase() in ignored
                    if (isIgnored && !allow) { return false }
                    if (!isIgnored && allow) { return true }
                }
                return !allow
        }
        throw new IllegalArgumentException("build strategy ${s.name} is not simulated")
    }

    private static List<DslNode> nested(DslNode s) {
        DslNode st = s.children.find { it.name == 'strategies' }
        return st == null ? [] : st.children
    }
}
