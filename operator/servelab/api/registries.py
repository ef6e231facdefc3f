"""Names other tools define, pinned with the version they come from, so that a name the pinned worker
images do not know is refused at admission instead of failing after the download (and calibration).

tests/unit/test_registries.py compares each list with the tool's own registry when the worker
environment is installed (~/.cache/servelab/envs/); update both together when an image is bumped.
"""

from __future__ import annotations

# evalscope.api.registry.BENCHMARK_REGISTRY (all of evalscope.benchmarks loaded), evalscope 1.14.1
EVALSCOPE_VERSION = "1.14.1"
EVALSCOPE_DATASETS: tuple[str, ...] = (
    "a_okvqa", "aa_lcr", "acebench", "agieval", "ai2d", "aime24", "aime25", "aime26", "air_bench_chat",
    "air_bench_foundation", "alpaca_eval", "amc", "anat_em", "anli", "arc", "arc_agi_2", "arc_indic",
    "arena_hard", "arxivmath", "arxivrollbench", "arxivrollbench_full", "automation_bench",
    "baby_vision", "banking77", "bbh", "bc2gm", "bc4chemd", "bc5cdr", "bfcl_v3", "bfcl_v4",
    "bhasha_bench_multi_ayur", "bhasha_bench_multi_finance", "bhasha_bench_multi_krishi",
    "bhasha_bench_multi_legal", "bhashabenchv1_ayur", "bhashabenchv1_finance", "bhashabenchv1_krishi",
    "bhashabenchv1_legal", "bigcodebench", "bigcodebench_hard", "biomix_qa", "bird_sql", "blink",
    "boolq", "broad_twitter_corpus", "browsecomp", "cc_bench", "cc_ocr_v2", "ceval", "chartqa",
    "charxiv", "chinese_simpleqa", "cl_bench", "claw_eval", "cmath", "cmmlu", "cmmmu", "cmmu",
    "coin_flip", "common_voice_15", "commonsense_qa", "competition_math", "conll2003", "conllpp",
    "contract_nli", "copious", "count_qa", "cross_ner", "data_collection", "deep_swe", "deepsearchqa",
    "docmath", "docvqa", "drivel_binary", "drivel_multilabel", "drivel_selection", "drivel_writing",
    "drop", "ds1000", "emb_spatial_bench", "eq_bench", "erqa", "evalmuse", "fin_ner", "finqa", "fleurs",
    "frames", "gaia", "gdpval", "gedit", "genai_bench", "general_arena", "general_decision",
    "general_fc", "general_mcq", "general_qa", "general_t2i", "general_vmcq", "general_vqa",
    "genia_ner", "gpqa_diamond", "gsm8k", "gsm8k_indic", "gsm8k_v", "hallusion_bench", "halueval",
    "harvey_ner", "health_bench", "hellaswag", "hellaswag_hi", "hipho", "hle", "hmmt25", "hmmt26",
    "hmmt_nov25", "hpdv2", "humaneval", "humaneval_plus", "ifbench", "ifeval", "imo_answerbench",
    "indic_boolq", "indic_param", "infovqa", "iquiz", "jevbench", "jnlpba", "jnlpba_rare", "job_bench",
    "k2_verifier", "kimi_verifier", "kina", "librispeech", "live_code_bench", "locomo", "logi_qa",
    "logic_vista", "longbench_v2", "longmemeval", "maritime_bench", "maritime_ocr_bench", "math_500",
    "math_qa", "math_verse", "math_vision", "math_vista", "mbpp", "mbpp_plus", "mcp_atlas",
    "measure_bench", "med_mcqa", "medxpertqa", "mgsm", "mia_bench", "micro_vqa", "milu", "minerva_math",
    "minimax_verifier", "miniwob", "mit_movie_trivia", "mit_restaurant", "mm_bench", "mm_star", "mmau",
    "mmlu", "mmlu_pro", "mmlu_redux", "mmmlu", "mmmu", "mmmu_pro", "mri_mcqa", "msr_vtt", "msvd",
    "mt_bench", "multi_if", "multi_nerd", "multiple_humaneval", "multiple_mbpp", "music_trivia", "musr",
    "mvbench", "ncbi", "needle_haystack", "ocr_bench", "ocr_bench_v2", "officeqa", "olmocr_bench",
    "olympiad_bench", "omni_bench", "omni_doc_bench", "omni_doc_bench_v1_6", "one_million_bench",
    "ontonotes5", "open_decisions", "openai_mrcr", "perception_bench", "perspective_gap_prompt_writing",
    "perspective_gap_role_assignment", "phyx_mc", "phyx_oe", "piqa", "plawbench", "pmc_vqa",
    "poly_math", "pope", "prbench", "process_bench", "pubmedqa", "qasc", "race", "real_world_qa",
    "ref_adv_s", "refcoco", "researchrubrics", "reward_bench", "safety_bench", "sanskriti", "scicode",
    "science_qa", "sciq", "screenspot_pro", "seed_bench_2_plus", "seed_tts_eval", "simple_qa",
    "simple_vqa", "siqa", "skillsbench", "slake", "sparc", "stsb", "super_gpqa", "surds",
    "swe_bench_lite", "swe_bench_lite_agentic", "swe_bench_multilingual_agentic", "swe_bench_pro",
    "swe_bench_verified", "swe_bench_verified_agentic", "swe_bench_verified_mini",
    "swe_bench_verified_mini_agentic", "tablebench", "tat_qa", "tau2_bench", "tau3_bench", "tau_bench",
    "terminal_bench_v2", "terminal_bench_v2_1", "terminal_bench_v4", "thchs30", "tifa160", "tir_bench",
    "tool_bench", "toolathlon", "torgo", "trivia_qa", "triviaqa_indic", "truthful_qa", "tvbench",
    "tweebank_ner", "tweet_ner_7", "videomme_v2", "visfactor", "visualoverload", "visulogic",
    "vlms_are_biased", "vqav2", "vstar_bench", "vtcbench", "wenet_speech", "wide_search", "winogrande",
    "wmt24pp", "wnut2017", "world_vqa", "zebralogicbench", "zerobench",
)  # fmt: skip

# compressed_tensors.quantization.quant_scheme.PRESET_SCHEMES, compressed-tensors 0.19.0
# (the quantize worker upper-cases the name it is given)
COMPRESSED_TENSORS_VERSION = "0.19.0"
COMPRESSOR_SCHEMES: tuple[str, ...] = (
    "FP8", "FP8_BLOCK", "FP8_DYNAMIC", "INT8", "MXFP4", "MXFP4A16", "MXFP8", "MXFP8A16", "NVFP4",
    "NVFP4A16", "UNQUANTIZED", "W2A16", "W2A4", "W2A8", "W3A16", "W3A4", "W3A8", "W4A16", "W4A16_ASYM",
    "W4A4", "W4A8", "W4AFP8", "W5A16", "W5A8", "W6A16", "W6A8", "W7A16", "W7A8", "W8A16", "W8A8",
)  # fmt: skip
