"""The shared knowledge base asset: every source's `context` depends on it."""


import dagster as dg

from medtrinity_core.knowledge.medquad import PASSAGES, parse_medquad
from medtrinity_core.knowledge.store import build
from medtrinity_core.records import frame
from medtrinity_core.sources.schema import KnowledgeConfig
from medtrinity_dagster.resources import EmbedderResource, Progress, WorkdirResource

KNOWLEDGE_KEY = dg.AssetKey("knowledge_base")


def build_knowledge_asset(knowledge: KnowledgeConfig | None) -> dg.AssetsDefinition:
    description = f"{knowledge.name}: {knowledge.format} passages embedded into Chroma" if knowledge else "no knowledge corpus configured"

    @dg.asset(key=KNOWLEDGE_KEY, group_name="knowledge", io_manager_key="manifest_io", kinds={"chroma"}, description=description)
    def knowledge_base(context: dg.AssetExecutionContext, workdir: WorkdirResource, embedder: EmbedderResource, progress: dg.ResourceParam[Progress]) -> dg.Output:
        passages = parse_medquad(knowledge.root, knowledge.include) if knowledge else frame([], PASSAGES)
        emb = embedder.get()
        version, rebuilt = build(passages, workdir.get().chroma, emb, knowledge.name if knowledge else "")
        progress.advance("", "knowledge_base", passages.height)
        return dg.Output(
            passages,
            metadata={
                "passages": passages.height,
                "documents": passages["doc_id"].n_unique(),
                "kb_version": version,
                "rebuilt": rebuilt,
                "embedder": emb.model_id,
                "license": knowledge.license if knowledge else "",
            },
        )

    return knowledge_base
