//! Every numeric cap is written in the header next to its field, and the message of a value above it states
//! the same number. The numbers come from the library's constants, so neither side can drift.
mod common;
use common::*;
use hip_attn::args::MAX_TOKENS;
use hip_attn::config::{MAX_BLOCK, MAX_HEADS, MAX_K, MAX_SINK_WINDOW, MAX_SOFTMAX_SCALE};
use hip_attn::tensor::DType;
use hip_attn::*;
use std::ptr::null_mut;

/// The doc comment right above `<type> <field>;` inside `struct <name> { ... }` of the header.
fn field_doc(header: &str, name: &str, field: &str) -> String {
    let start =
        header.find(&format!("typedef struct {name} {{")).unwrap_or_else(|| panic!("struct {name} not in header"));
    let body = &header[start..start + header[start..].find(&format!("}} {name};")).unwrap()];
    let lines: Vec<&str> = body.lines().collect();
    let at = lines
        .iter()
        .position(|l| {
            let t = l.trim().trim_end_matches(';');
            t.split_whitespace().last() == Some(field) && l.trim().ends_with(';')
        })
        .unwrap_or_else(|| panic!("{name}.{field} not in header"));
    let mut doc = Vec::new();
    for l in lines[..at].iter().rev() {
        let t = l.trim();
        if t == "/**" {
            break;
        }
        doc.push(t.trim_start_matches("*/").trim_start_matches('*').trim());
    }
    doc.reverse();
    doc.join(" ")
}

#[test]
fn every_cap_is_in_its_fields_doc() {
    let header = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/hip_attn.h")).unwrap();
    let heads = MAX_HEADS.to_string();
    let block = MAX_BLOCK.to_string();
    let sw = MAX_SINK_WINDOW.to_string();
    let tokens = MAX_TOKENS.to_string();
    let caps: Vec<(&str, &str, String)> = vec![
        ("hip_config", "num_q_heads", heads.clone()),
        ("hip_config", "num_kv_heads", heads),
        ("hip_config", "k", MAX_K.to_string()),
        ("hip_config", "bq", block.clone()),
        ("hip_config", "bk", block.clone()),
        ("hip_config", "sq", block.clone()),
        ("hip_config", "sk", block),
        ("hip_config", "sink", sw.clone()),
        ("hip_config", "window", sw),
        ("hip_config", "softmax_scale", MAX_SOFTMAX_SCALE.to_string()),
        ("hip_config", "prefill_scan_tail", tokens.clone()),
        ("hip_prefill_args", "batch_size", tokens.clone()),
        ("hip_prefill_args", "total_q", tokens.clone()),
        ("hip_prefill_args", "total_k", tokens.clone()),
        ("hip_decode_args", "batch_size", tokens.clone()),
        ("hip_decode_args", "max_seqlen_k", tokens.clone()),
        ("hip_kv_cache", "page_size", tokens.clone()),
        ("hip_kv_cache", "page_table_stride", tokens.clone()),
        ("hip_kv_cache", "num_pages", tokens.clone()),
        ("hip_merge_args", "num_tokens", tokens.clone()),
        ("hip_merge_args", "num_heads", tokens),
    ];
    for (s, f, cap) in caps {
        let doc = field_doc(&header, s, f);
        assert!(doc.contains(&cap), "{s}.{f}: the header's doc {doc:?} does not state the cap {cap}");
    }
    // The CUDA backend's batch limit too.
    for s in ["hip_prefill_args", "hip_decode_args"] {
        assert!(field_doc(&header, s, "batch_size").contains("65535"), "{s}.batch_size: CUDA's 65535");
    }
}

#[test]
fn a_value_above_a_cap_gets_a_message_with_the_same_number() {
    type Mutate = fn(&mut hip_config, u32);
    let rows: Vec<(&str, Mutate, usize)> = vec![
        ("num_q_heads", |c, v| (c.num_q_heads, c.num_kv_heads) = (v, 1), MAX_HEADS),
        ("num_kv_heads", |c, v| (c.num_q_heads, c.num_kv_heads) = (MAX_HEADS as u32, v), MAX_HEADS),
        ("k", |c, v| c.k = v, MAX_K),
        ("bq", |c, v| c.bq = v, MAX_BLOCK),
        ("bk", |c, v| c.bk = v, MAX_BLOCK),
        ("sq", |c, v| c.sq = v, MAX_BLOCK),
        ("sk", |c, v| c.sk = v, MAX_BLOCK),
        ("sink", |c, v| c.sink = v, MAX_SINK_WINDOW),
        ("window", |c, v| c.window = v, MAX_SINK_WINDOW),
        ("prefill_scan_tail", |c, v| c.prefill_scan_tail = v, MAX_TOKENS),
    ];
    for (field, mutate, cap) in rows {
        for (v, ok) in [(cap as u32, true), (cap as u32 + 1, false)] {
            let mut cfg = config(DType::Bf16, 64, 4, 4);
            mutate(&mut cfg, v);
            let mut out = null_mut();
            // SAFETY: cfg is a whole hip_config; out is writable.
            let st = unsafe { hip_ctx_create(&cfg, &mut out) };
            // SAFETY: out is NULL or a live context.
            unsafe { hip_ctx_destroy(out) };
            if ok {
                // At the cap a config may still be refused for another reason (heads vs head_dim is fine here).
                assert!(
                    st != hip_status::HIP_ATTN_STATUS_INVALID_CONFIG || !last_error().contains(&format!("{field} (")),
                    "{field} = {v} (the cap) refused: {}",
                    last_error()
                );
            } else {
                let msg = last_error();
                assert_eq!(st, hip_status::HIP_ATTN_STATUS_INVALID_CONFIG, "{field} = {v}: {msg}");
                assert!(msg.contains(&format!("{field} ({v})")) && msg.contains(&cap.to_string()), "{field}: {msg}");
            }
        }
    }
    let ctx = Ctx::new(&config(DType::Bf16, 64, 4, 4)).unwrap();
    let mut n = 0usize;
    // SAFETY: live context, writable out.
    let st = unsafe { hip_prefill_workspace_size(ctx.0, 1, MAX_TOKENS as u32 + 1, 1, 1, &mut n) };
    assert_eq!(st, hip_status::HIP_ATTN_STATUS_INVALID_ARGUMENT);
    assert!(
        last_error().contains(&format!("total_q ({}) must be between 1 and {MAX_TOKENS}", MAX_TOKENS + 1)),
        "{}",
        last_error()
    );
}
