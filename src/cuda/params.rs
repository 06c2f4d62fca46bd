//! Rust mirrors of the kernel parameter blocks in cuda/hip_params.h, field for field and in the same order.
//! Pointers are u64 (device addresses), `long long` is i64, `int` is i32, `float` is f32.
//!
//! Each struct has a compile-time size assertion, and `LAYOUT` = [sizeof, offsetof(first field), ...] in
//! declaration order: the order in which the device layout kernel from [`layout_kernel_source`] reports them.

use std::mem::{offset_of, size_of};

macro_rules! mirror {
    ($(#[$m:meta])* $name:ident = $cname:literal, size $size:literal { $($f:ident : $t:ty),* $(,)? }) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Debug, Clone, Copy, Default, PartialEq)]
        pub struct $name { $(pub $f: $t),* }

        const _: () = assert!(size_of::<$name>() == $size);
        const _: () = assert!(std::mem::align_of::<$name>() == 8);

        impl $name {
            /// The C typedef name.
            pub const C_NAME: &'static str = $cname;
            /// Field names in declaration order.
            pub const FIELDS: &'static [&'static str] = &[$(stringify!($f)),*];
            /// [sizeof, offsets of FIELDS...].
            pub const LAYOUT: &'static [usize] = &[size_of::<$name>(), $(offset_of!($name, $f)),*];
        }
    };
}

mirror! {
    /// hip_prefill_params: kernels hip_prefill_search and hip_prefill_attn.
    PrefillParams = "hip_prefill_params", size 216 {
        q: u64, k: u64, v: u64, o: u64,
        lse: u64,
        cu_seqlens_q: u64,
        cu_seqlens_k: u64,
        mask_idx: u64,
        mask_cnt: u64,
        mask_state: u64,
        error_flag: u64,
        q_tok_stride: i64, q_head_stride: i64,
        k_tok_stride: i64, k_head_stride: i64,
        v_tok_stride: i64, v_head_stride: i64,
        o_tok_stride: i64, o_head_stride: i64,
        batch: i32, total_q: i32, total_k: i32, max_seqlen_q: i32,
        max_seqlen_k: i32, num_q_heads: i32, num_kv_heads: i32, mask_heads: i32,
        sink: i32, window: i32, state_ints: i32, slots: i32,
        scale: f32,
        scan_tail: i32,
        tail_blocks: i32,
        state_fingerprint: i32,
    }
}

mirror! {
    /// hip_decode_params: kernels hip_decode_search(_wide) or hip_decode_scan(_merge), hip_decode_attn(_direct),
    /// hip_decode_combine.
    DecodeParams = "hip_decode_params", size 224 {
        q: u64, o: u64,
        lse: u64,
        k_cache: u64, v_cache: u64,
        seqlens_k: u64,
        page_table: u64,
        mask_state: u64,
        part_o: u64,
        part_lse: u64,
        error_flag: u64,
        q_seq_stride: i64, q_head_stride: i64,
        o_seq_stride: i64, o_head_stride: i64,
        kv_seq_stride: i64,
        kv_tok_stride: i64, kv_head_stride: i64,
        scan_ws: u64,
        batch: i32, paged: i32, page_size: i32, pt_stride: i32,
        num_pages: i32, max_seqlen_k: i32, num_q_heads: i32, num_kv_heads: i32,
        mask_heads: i32, sink: i32, window: i32, refresh: i32,
        state_ints: i32, num_splits: i32,
        scale: f32,
        scan_splits: i32,
        state_fingerprint: i32,
        reserved: i32,
    }
}

mirror! {
    /// hip_merge_params: kernel hip_merge_states.
    MergeParams = "hip_merge_params", size 104 {
        o_a: u64, lse_a: u64, o_b: u64, lse_b: u64, o_out: u64, lse_out: u64,
        a_tok_stride: i64, a_head_stride: i64,
        b_tok_stride: i64, b_head_stride: i64,
        out_tok_stride: i64, out_head_stride: i64,
        num_tokens: i32, num_heads: i32,
    }
}

/// (C name, field names, layout) of every mirrored struct, in the order the layout kernel reports them.
pub const MIRRORS: [(&str, &[&str], &[usize]); 3] = [
    (PrefillParams::C_NAME, PrefillParams::FIELDS, PrefillParams::LAYOUT),
    (DecodeParams::C_NAME, DecodeParams::FIELDS, DecodeParams::LAYOUT),
    (MergeParams::C_NAME, MergeParams::FIELDS, MergeParams::LAYOUT),
];

/// Expected output of the layout kernel: for each struct of [`MIRRORS`], sizeof then every offset.
pub fn expected_layout() -> Vec<u64> {
    MIRRORS.iter().flat_map(|(_, _, l)| l.iter().map(|&x| x as u64)).collect()
}

/// Name of the kernel in [`layout_kernel_source`] (the same name and output order as the hip_params_layout kernel
/// in cuda/hip_attn.cu, so either can be checked against [`expected_layout`]; they live in different modules).
pub const LAYOUT_KERNEL_NAME: &str = "hip_params_layout";

/// CUDA source of a one-thread kernel `hip_params_layout(unsigned long long* out)` that writes
/// `expected_layout().len()` values: for each struct, sizeof then offsetof of every field, in declaration order.
/// Compile it with "hip_params.h" as a header, launch it with the address of a device buffer, copy the buffer
/// back and compare with [`expected_layout`] (GPU test). Offsets are address differences inside a local object\n/// (NVRTC has neither <stddef.h> nor __builtin_offsetof).
pub fn layout_kernel_source() -> String {
    let mut s = String::from(
        "#include \"hip_params.h\"\n\
         extern \"C\" __global__ void hip_params_layout(unsigned long long* out) {\n\
         \x20   if (blockIdx.x != 0 || threadIdx.x != 0) return;\n\
         \x20   int i = 0;\n",
    );
    for (n, (cname, fields, _)) in MIRRORS.iter().enumerate() {
        s.push_str(&format!("    {{ {cname} t{n}; const char* b = reinterpret_cast<const char*>(&t{n});\n"));
        s.push_str(&format!("      out[i++] = sizeof({cname});\n"));
        for f in fields.iter() {
            s.push_str(&format!(
                "      out[i++] = (unsigned long long)(reinterpret_cast<const char*>(&t{n}.{f}) - b);\n"
            ));
        }
        s.push_str("    }\n");
    }
    s.push_str("}\n");
    s
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn sizes_and_field_counts() {
        assert_eq!(size_of::<PrefillParams>(), 216);
        assert_eq!(size_of::<DecodeParams>(), 224);
        assert_eq!(size_of::<MergeParams>(), 104);
        assert_eq!(PrefillParams::FIELDS.len(), 35);
        assert_eq!(DecodeParams::FIELDS.len(), 37);
        assert_eq!(MergeParams::FIELDS.len(), 14);
        for (_, f, l) in MIRRORS {
            assert_eq!(l.len(), f.len() + 1);
            // Offsets strictly increase: declaration order, no reordering.
            assert!(l[1..].windows(2).all(|w| w[0] < w[1]));
            assert_eq!(l[1], 0);
        }
        assert_eq!(expected_layout().len(), 36 + 38 + 15);
        assert_eq!(offset_of!(PrefillParams, scale), 200);
        assert_eq!(offset_of!(DecodeParams, scale), 208);
        assert_eq!(offset_of!(MergeParams, num_heads), 100);
    }

    fn header_path() -> Option<PathBuf> {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("cuda/hip_params.h");
        p.exists().then_some(p)
    }

    /// Every field name of the mirrors appears in the C header (catches renames on either side).
    #[test]
    fn field_names_match_header() {
        let Some(p) = header_path() else {
            eprintln!("skipped: cuda/hip_params.h not found");
            return;
        };
        let h = std::fs::read_to_string(p).unwrap();
        // The header's own field counts for the device layout kernel (hip_attn.cu's hip_params_layout), when
        // present, agree with the mirrors, so expected_layout() is comparable with that kernel's output.
        for (define, n) in [
            ("HIP_ATTN_LAYOUT_PREFILL_FIELDS", PrefillParams::FIELDS.len()),
            ("HIP_ATTN_LAYOUT_DECODE_FIELDS", DecodeParams::FIELDS.len()),
            ("HIP_ATTN_LAYOUT_MERGE_FIELDS", MergeParams::FIELDS.len()),
        ] {
            let v = h.lines().find_map(|l| l.strip_prefix(&format!("#define {define} ")));
            if let Some(v) = v {
                assert_eq!(v.trim().parse::<usize>().ok(), Some(n), "{define}");
            }
        }
        for (cname, fields, _) in MIRRORS {
            assert!(h.contains(&format!("}} {cname};")), "{cname} missing from header");
            for f in fields {
                let found = h.split(|c: char| !(c.is_alphanumeric() || c == '_')).any(|w| w == *f);
                assert!(found, "{cname}.{f} not in header");
            }
        }
    }

    /// The numbers a C program prints, one per line, whose `main` body is `body` and which includes
    /// cuda/hip_params.h (and stdio.h, stddef.h): compiled and run with the host's `cc`. None (with a printed
    /// reason) without the header or a working compiler.
    pub(crate) fn host_c_numbers(tag: &str, body: &str) -> Option<Vec<u64>> {
        let Some(p) = header_path() else {
            eprintln!("skipped: cuda/hip_params.h not found");
            return None;
        };
        let dir = std::env::temp_dir().join(format!("hipattn-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let c = format!(
            "#include <stdio.h>\n#include <stddef.h>\n#include \"{}\"\nint main(void) {{\n{body}return 0; }}\n",
            p.display()
        );
        let src = dir.join(format!("{tag}.c"));
        let exe = dir.join(tag);
        std::fs::write(&src, c).unwrap();
        let built = std::process::Command::new("cc").arg("-o").arg(&exe).arg(&src).status();
        if !matches!(built, Ok(s) if s.success()) {
            eprintln!("skipped: no working host C compiler");
            let _ = std::fs::remove_dir_all(&dir);
            return None;
        }
        let out = std::process::Command::new(&exe).output().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        Some(String::from_utf8(out.stdout).unwrap().lines().map(|l| l.trim().parse().unwrap()).collect())
    }

    /// Host C compiler check of the header's layout (the CUDA ABI lays out these plain structs exactly as the
    /// x86_64/aarch64 host ABI does): compiles and runs a C program printing the layout. Skipped without `cc`.
    #[test]
    fn layout_matches_header_via_host_cc() {
        let mut body = String::new();
        for (cname, fields, _) in MIRRORS {
            body.push_str(&format!("printf(\"%zu\\n\", sizeof({cname}));\n"));
            for f in fields {
                body.push_str(&format!("printf(\"%zu\\n\", offsetof({cname}, {f}));\n"));
            }
        }
        if let Some(got) = host_c_numbers("layout", &body) {
            assert_eq!(got, expected_layout());
        }
    }

    /// The layout kernel compiles with NVRTC against the real header (the GPU test launches it).
    #[test]
    fn layout_kernel_compiles() {
        let Some(p) = header_path() else {
            eprintln!("skipped: cuda/hip_params.h not found");
            return;
        };
        if !crate::cuda::compile::tests::nvrtc_available() {
            return;
        }
        let header = std::fs::read_to_string(p).unwrap();
        let src = layout_kernel_source();
        let cubin = crate::cuda::compile::compile_cubin(
            "layout.cu",
            &[("layout.cu", &src), ("hip_params.h", &header)],
            &[],
            "sm_80",
        )
        .unwrap();
        assert!(String::from_utf8_lossy(&cubin).contains(LAYOUT_KERNEL_NAME));
    }
}
