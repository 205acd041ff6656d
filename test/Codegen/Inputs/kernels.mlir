// Small bare-pointer entry points around single moe ops, compiled by the numeric tests
// (cpu-kernels-numeric.mlir) and checked by kernels-harness.cpp against plain C++ loops.
// Every function takes fixed-size buffers with room for 32 tokens and the token count %n
// (dynamic T), like moec_prefill does.
module {
  // logits[T, 6] = x · gateᵀ with a bf16 gate.
  func.func @router(%x: memref<32x40xf32>, %g: memref<6x40xbf16>, %n: index,
                    %out: memref<32x6xf32>) {
    %xt = bufferization.to_tensor %x restrict : memref<32x40xf32> to tensor<32x40xf32>
    %xs = tensor.extract_slice %xt[0, 0] [%n, 40] [1, 1] : tensor<32x40xf32> to tensor<?x40xf32>
    %gt = bufferization.to_tensor %g restrict : memref<6x40xbf16> to tensor<6x40xbf16>
    %l = moe.router %xs, %gt : (tensor<?x40xf32>, tensor<6x40xbf16>) -> tensor<?x6xf32>
    %ot = bufferization.to_tensor %out restrict writable : memref<32x6xf32> to tensor<32x6xf32>
    %o = tensor.insert_slice %l into %ot[0, 0] [%n, 6] [1, 1] : tensor<?x6xf32> into tensor<32x6xf32>
    bufferization.materialize_in_destination %o in restrict writable %out : (tensor<32x6xf32>, memref<32x6xf32>) -> ()
    return
  }

  // Top-3 of 6 experts with softmax weights.
  func.func @top_k(%logits: memref<32x6xf32>, %n: index, %w: memref<32x3xf32>,
                   %ids: memref<32x3xi32>) {
    %lt = bufferization.to_tensor %logits restrict : memref<32x6xf32> to tensor<32x6xf32>
    %ls = tensor.extract_slice %lt[0, 0] [%n, 6] [1, 1] : tensor<32x6xf32> to tensor<?x6xf32>
    %wts, %id = moe.top_k_gating %ls {k = 3 : i64} : (tensor<?x6xf32>) -> (tensor<?x3xf32>, tensor<?x3xi32>)
    %wt = bufferization.to_tensor %w restrict writable : memref<32x3xf32> to tensor<32x3xf32>
    %w2 = tensor.insert_slice %wts into %wt[0, 0] [%n, 3] [1, 1] : tensor<?x3xf32> into tensor<32x3xf32>
    bufferization.materialize_in_destination %w2 in restrict writable %w : (tensor<32x3xf32>, memref<32x3xf32>) -> ()
    %it = bufferization.to_tensor %ids restrict writable : memref<32x3xi32> to tensor<32x3xi32>
    %i2 = tensor.insert_slice %id into %it[0, 0] [%n, 3] [1, 1] : tensor<?x3xi32> into tensor<32x3xi32>
    bufferization.materialize_in_destination %i2 in restrict writable %ids : (tensor<32x3xi32>, memref<32x3xi32>) -> ()
    return
  }

  // Stable counting sort of [T, 2] expert ids over 5 experts.
  func.func @dispatch(%ids: memref<32x2xi32>, %n: index, %perm: memref<64xi32>,
                      %offsets: memref<6xi32>) {
    %it = bufferization.to_tensor %ids restrict : memref<32x2xi32> to tensor<32x2xi32>
    %is = tensor.extract_slice %it[0, 0] [%n, 2] [1, 1] : tensor<32x2xi32> to tensor<?x2xi32>
    %p, %o = moe.dispatch %is {num_experts = 5 : i64} : (tensor<?x2xi32>) -> (tensor<?xi32>, tensor<6xi32>)
    %c2 = arith.constant 2 : index
    %r = arith.muli %n, %c2 : index
    %pt = bufferization.to_tensor %perm restrict writable : memref<64xi32> to tensor<64xi32>
    %p2 = tensor.insert_slice %p into %pt[0] [%r] [1] : tensor<?xi32> into tensor<64xi32>
    bufferization.materialize_in_destination %p2 in restrict writable %perm : (tensor<64xi32>, memref<64xi32>) -> ()
    bufferization.materialize_in_destination %o in restrict writable %offsets : (tensor<6xi32>, memref<6xi32>) -> ()
    return
  }

  // out[r] = rows[r] · W[e(r)]ᵀ, bf16 [5, 13, 37] weights (N and K not multiples of the
  // vector width), rows grouped by the given offsets; R = %n rows.
  func.func @grouped_matmul(%rows: memref<64x37xf32>, %w: memref<5x13x37xbf16>,
                            %offsets: memref<6xi32>, %n: index, %out: memref<64x13xf32>) {
    %rt = bufferization.to_tensor %rows restrict : memref<64x37xf32> to tensor<64x37xf32>
    %rs = tensor.extract_slice %rt[0, 0] [%n, 37] [1, 1] : tensor<64x37xf32> to tensor<?x37xf32>
    %wt = bufferization.to_tensor %w restrict : memref<5x13x37xbf16> to tensor<5x13x37xbf16>
    %ot = bufferization.to_tensor %offsets restrict : memref<6xi32> to tensor<6xi32>
    %y = moe.grouped_matmul %rs, %wt, %ot : (tensor<?x37xf32>, tensor<5x13x37xbf16>, tensor<6xi32>) -> tensor<?x13xf32>
    %yt = bufferization.to_tensor %out restrict writable : memref<64x13xf32> to tensor<64x13xf32>
    %y2 = tensor.insert_slice %y into %yt[0, 0] [%n, 13] [1, 1] : tensor<?x13xf32> into tensor<64x13xf32>
    bufferization.materialize_in_destination %y2 in restrict writable %out : (tensor<64x13xf32>, memref<64x13xf32>) -> ()
    return
  }

  // y[t] = sum_s weights[t, s] * rows[inverse(t*2 + s)], T = %n, k = 2.
  func.func @combine(%rows: memref<64x24xf32>, %perm: memref<64xi32>, %w: memref<32x2xf32>,
                     %n: index, %out: memref<32x24xf32>) {
    %c2 = arith.constant 2 : index
    %r = arith.muli %n, %c2 : index
    %rt = bufferization.to_tensor %rows restrict : memref<64x24xf32> to tensor<64x24xf32>
    %rs = tensor.extract_slice %rt[0, 0] [%r, 24] [1, 1] : tensor<64x24xf32> to tensor<?x24xf32>
    %pt = bufferization.to_tensor %perm restrict : memref<64xi32> to tensor<64xi32>
    %ps = tensor.extract_slice %pt[0] [%r] [1] : tensor<64xi32> to tensor<?xi32>
    %wt = bufferization.to_tensor %w restrict : memref<32x2xf32> to tensor<32x2xf32>
    %ws = tensor.extract_slice %wt[0, 0] [%n, 2] [1, 1] : tensor<32x2xf32> to tensor<?x2xf32>
    %y = moe.combine %rs, %ps, %ws : (tensor<?x24xf32>, tensor<?xi32>, tensor<?x2xf32>) -> tensor<?x24xf32>
    %yt = bufferization.to_tensor %out restrict writable : memref<32x24xf32> to tensor<32x24xf32>
    %y2 = tensor.insert_slice %y into %yt[0, 0] [%n, 24] [1, 1] : tensor<?x24xf32> into tensor<32x24xf32>
    bufferization.materialize_in_destination %y2 in restrict writable %out : (tensor<32x24xf32>, memref<32x24xf32>) -> ()
    return
  }

  // The whole MoE block: D = 32, F = 24, E = 4, k = 2, bf16 weights.
  func.func @sparse_block(%x: memref<32x32xf32>, %g: memref<4x32xbf16>, %w1: memref<4x24x32xbf16>,
                          %w3: memref<4x24x32xbf16>, %w2: memref<4x32x24xbf16>, %n: index,
                          %out: memref<32x32xf32>) {
    %xt = bufferization.to_tensor %x restrict : memref<32x32xf32> to tensor<32x32xf32>
    %xs = tensor.extract_slice %xt[0, 0] [%n, 32] [1, 1] : tensor<32x32xf32> to tensor<?x32xf32>
    %gt = bufferization.to_tensor %g restrict : memref<4x32xbf16> to tensor<4x32xbf16>
    %w1t = bufferization.to_tensor %w1 restrict : memref<4x24x32xbf16> to tensor<4x24x32xbf16>
    %w3t = bufferization.to_tensor %w3 restrict : memref<4x24x32xbf16> to tensor<4x24x32xbf16>
    %w2t = bufferization.to_tensor %w2 restrict : memref<4x32x24xbf16> to tensor<4x32x24xbf16>
    %y = moe.sparse_block %xs, %gt, %w1t, %w3t, %w2t {k = 2 : i64}
        : (tensor<?x32xf32>, tensor<4x32xbf16>, tensor<4x24x32xbf16>, tensor<4x24x32xbf16>,
           tensor<4x32x24xbf16>) -> tensor<?x32xf32>
    %yt = bufferization.to_tensor %out restrict writable : memref<32x32xf32> to tensor<32x32xf32>
    %y2 = tensor.insert_slice %y into %yt[0, 0] [%n, 32] [1, 1] : tensor<?x32xf32> into tensor<32x32xf32>
    bufferization.materialize_in_destination %y2 in restrict writable %out : (tensor<32x32xf32>, memref<32x32xf32>) -> ()
    return
  }

  // RMSNorm over 48 columns with a bf16 weight, then a dense f16 projection to 20.
  func.func @norm_linear(%x: memref<32x48xf32>, %nw: memref<48xbf16>, %w: memref<20x48xf16>,
                         %n: index, %normed: memref<32x48xf32>, %out: memref<32x20xf32>) {
    %xt = bufferization.to_tensor %x restrict : memref<32x48xf32> to tensor<32x48xf32>
    %xs = tensor.extract_slice %xt[0, 0] [%n, 48] [1, 1] : tensor<32x48xf32> to tensor<?x48xf32>
    %nwt = bufferization.to_tensor %nw restrict : memref<48xbf16> to tensor<48xbf16>
    %wt = bufferization.to_tensor %w restrict : memref<20x48xf16> to tensor<20x48xf16>
    %h = moe.rms_norm %xs, %nwt {epsilon = 1.0e-05 : f64} : (tensor<?x48xf32>, tensor<48xbf16>) -> tensor<?x48xf32>
    %y = moe.linear %h, %wt : (tensor<?x48xf32>, tensor<20x48xf16>) -> tensor<?x20xf32>
    %ht = bufferization.to_tensor %normed restrict writable : memref<32x48xf32> to tensor<32x48xf32>
    %h2 = tensor.insert_slice %h into %ht[0, 0] [%n, 48] [1, 1] : tensor<?x48xf32> into tensor<32x48xf32>
    bufferization.materialize_in_destination %h2 in restrict writable %normed : (tensor<32x48xf32>, memref<32x48xf32>) -> ()
    %yt = bufferization.to_tensor %out restrict writable : memref<32x20xf32> to tensor<32x20xf32>
    %y2 = tensor.insert_slice %y into %yt[0, 0] [%n, 20] [1, 1] : tensor<?x20xf32> into tensor<32x20xf32>
    bufferization.materialize_in_destination %y2 in restrict writable %out : (tensor<32x20xf32>, memref<32x20xf32>) -> ()
    return
  }

  // RoPE on [T, 3, 8] at positions start + t.
  func.func @rope(%x: memref<32x3x8xf32>, %n: index, %start: index, %out: memref<32x3x8xf32>) {
    %xt = bufferization.to_tensor %x restrict : memref<32x3x8xf32> to tensor<32x3x8xf32>
    %xs = tensor.extract_slice %xt[0, 0, 0] [%n, 3, 8] [1, 1, 1] : tensor<32x3x8xf32> to tensor<?x3x8xf32>
    %y = moe.rope %xs, %start {theta = 1.0e+04 : f64} : (tensor<?x3x8xf32>, index) -> tensor<?x3x8xf32>
    %yt = bufferization.to_tensor %out restrict writable : memref<32x3x8xf32> to tensor<32x3x8xf32>
    %y2 = tensor.insert_slice %y into %yt[0, 0, 0] [%n, 3, 8] [1, 1, 1] : tensor<?x3x8xf32> into tensor<32x3x8xf32>
    bufferization.materialize_in_destination %y2 in restrict writable %out : (tensor<32x3x8xf32>, memref<32x3x8xf32>) -> ()
    return
  }

  // GQA attention: 4 query heads over 2 KV heads, head dim 8, a 64-position cache, with
  // (window = 6) and without a sliding window. The cache already holds positions
  // [0, start + T).
  func.func @attention(%q: memref<32x4x8xf32>, %kc: memref<64x2x8xf32>, %vc: memref<64x2x8xf32>,
                       %n: index, %start: index, %out: memref<32x4x8xf32>,
                       %out_swa: memref<32x4x8xf32>) {
    %qt = bufferization.to_tensor %q restrict : memref<32x4x8xf32> to tensor<32x4x8xf32>
    %qs = tensor.extract_slice %qt[0, 0, 0] [%n, 4, 8] [1, 1, 1] : tensor<32x4x8xf32> to tensor<?x4x8xf32>
    %kt = bufferization.to_tensor %kc restrict : memref<64x2x8xf32> to tensor<64x2x8xf32>
    %vt = bufferization.to_tensor %vc restrict : memref<64x2x8xf32> to tensor<64x2x8xf32>
    %y = moe.attention %qs, %kt, %vt, %start {scale = 0.35355339059327373 : f64}
        : (tensor<?x4x8xf32>, tensor<64x2x8xf32>, tensor<64x2x8xf32>, index) -> tensor<?x4x8xf32>
    %z = moe.attention %qs, %kt, %vt, %start {scale = 0.35355339059327373 : f64, sliding_window = 6 : i64}
        : (tensor<?x4x8xf32>, tensor<64x2x8xf32>, tensor<64x2x8xf32>, index) -> tensor<?x4x8xf32>
    %yt = bufferization.to_tensor %out restrict writable : memref<32x4x8xf32> to tensor<32x4x8xf32>
    %y2 = tensor.insert_slice %y into %yt[0, 0, 0] [%n, 4, 8] [1, 1, 1] : tensor<?x4x8xf32> into tensor<32x4x8xf32>
    bufferization.materialize_in_destination %y2 in restrict writable %out : (tensor<32x4x8xf32>, memref<32x4x8xf32>) -> ()
    %zt = bufferization.to_tensor %out_swa restrict writable : memref<32x4x8xf32> to tensor<32x4x8xf32>
    %z2 = tensor.insert_slice %z into %zt[0, 0, 0] [%n, 4, 8] [1, 1, 1] : tensor<?x4x8xf32> into tensor<32x4x8xf32>
    bufferization.materialize_in_destination %z2 in restrict writable %out_swa : (tensor<32x4x8xf32>, memref<32x4x8xf32>) -> ()
    return
  }

  // The same MoE block on the one-token (static T = 1) path.
  func.func @sparse_block_decode(%x: memref<1x32xf32>, %g: memref<4x32xbf16>,
                                 %w1: memref<4x24x32xbf16>, %w3: memref<4x24x32xbf16>,
                                 %w2: memref<4x32x24xbf16>, %out: memref<1x32xf32>) {
    %xt = bufferization.to_tensor %x restrict : memref<1x32xf32> to tensor<1x32xf32>
    %gt = bufferization.to_tensor %g restrict : memref<4x32xbf16> to tensor<4x32xbf16>
    %w1t = bufferization.to_tensor %w1 restrict : memref<4x24x32xbf16> to tensor<4x24x32xbf16>
    %w3t = bufferization.to_tensor %w3 restrict : memref<4x24x32xbf16> to tensor<4x24x32xbf16>
    %w2t = bufferization.to_tensor %w2 restrict : memref<4x32x24xbf16> to tensor<4x32x24xbf16>
    %y = moe.sparse_block %xt, %gt, %w1t, %w3t, %w2t {k = 2 : i64}
        : (tensor<1x32xf32>, tensor<4x32xbf16>, tensor<4x24x32xbf16>, tensor<4x24x32xbf16>,
           tensor<4x32x24xbf16>) -> tensor<1x32xf32>
    bufferization.materialize_in_destination %y in restrict writable %out : (tensor<1x32xf32>, memref<1x32xf32>) -> ()
    return
  }
}
