"""The shared knowledge base asset: every source's `context` depends on it."""


import hashlib
import json

import dagster as dg

from medtrinity_core.knowledge.corpora import load_corpora
from medtrinity_core.knowledge.store import build, chunker_for
from medtrinity_core.pipeline import KNOWLEDGE_BASE
from medtrinity_core.sources.schema import KnowledgeConfig
from medtrinity_dagster.resources import KnowledgeResource, Progress, WorkdirResource

KNOWLEDGE_KEY = dg.AssetKey(KNOWLEDGE_BASE)

# Built by automation while it has never been materialized (a fresh deployment's first drop needs it),
# once: a failed build waits for a person; rebuilt by a person or `medtrinity run`.
BUILT_WHEN_MISSING = (dg.AutomationCondition.missing() & ~dg.AutomationCondition.in_progress()
                      & ~dg.AutomationCondition.execution_failed()).with_label("built when missing")


def knowledge_inputs(sources) -> str:
    """The corpora's files (path, size, modification time), the retrieval settings and the package
    version: the knowledge base is rebuilt only when one of them changes."""
    from medtrinity_core import __version__

    settings = sources.retrieval.model_dump(mode="json", exclude={"rerun_contexts"})  # what automation does, not what the knowledge base holds
    h = hashlib.sha256(json.dumps([__version__, settings], sort_keys=True).encode())
    for corpus in sources.corpora:
        h.update(json.dumps(corpus.model_dump(mode="json"), sort_keys=True).encode())
        for path in sorted(p for p in corpus.root.rglob("*") if p.is_file()):
            stat = path.stat()
            h.update(f"{path.relative_to(corpus.root)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def build_knowledge_asset(sources) -> dg.AssetsDefinition:
    """`sources`: the sources file; its corpora and retrieval settings make the knowledge base."""
    corpora: tuple[KnowledgeConfig, ...] = sources.corpora
    names = ", ".join(f"{c.name} ({c.format})" for c in corpora)
    description = f"{names}: passages embedded into Chroma" if corpora else "no knowledge corpus configured"

    @dg.asset(key=KNOWLEDGE_KEY, group_name="knowledge", io_manager_key="manifest_io", kinds={"chroma"}, description=description,
              automation_condition=BUILT_WHEN_MISSING)
    def knowledge_base(context: dg.AssetExecutionContext, workdir: WorkdirResource, knowledge: KnowledgeResource, progress: dg.ResourceParam[Progress]) -> dg.Output:
        inputs = knowledge_inputs(sources)  # what `medtrinity run` compares to skip an unchanged knowledge base
        cfg, emb = knowledge.config(), knowledge.embedder()
        passages = load_corpora(corpora, chunker_for(cfg, emb))
        version, rebuilt = build(passages, cfg, workdir.get().chroma, emb)
        progress.advance("", KNOWLEDGE_BASE, passages.height)
        per_corpus = {c.name: {"passages": int((passages["corpus"] == c.name).sum()), "license": c.license, "citation": c.citation} for c in corpora}
        return dg.Output(
            passages,
            data_version=dg.DataVersion(version),  # its content: a rebuild with other passages marks the contexts built on it stale
            metadata={
                "passages": passages.height,
                "documents": passages["doc_id"].n_unique(),
                "kb_version": version,
                "rebuilt": rebuilt,
                "embedder": emb.model_id,
                "chunking": f"{cfg.max_tokens} tokens, {cfg.overlap_tokens} overlapping",
                "store": cfg.server or "embedded",
                "corpora": dg.MetadataValue.json(per_corpus),
                "license": ", ".join(sorted({c.license for c in corpora})),
                "inputs": inputs,
            },
        )

    return knowledge_base
