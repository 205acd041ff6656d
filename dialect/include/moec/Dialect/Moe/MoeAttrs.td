//===- MoeAttrs.td - moe dialect attributes ----------------*- tablegen -*-===//
//
// How a quantized weight is stored: the format of its data and the group of K elements that
// share one scale. Ops that read weights (moe.linear, moe.sparse_block and the grouped
// expert GEMMs) take the data tensor in place of the weight, its scales as one more operand
// and this attribute as `quant`.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_DIALECT_MOE_MOEATTRS_TD
#define MOEC_DIALECT_MOE_MOEATTRS_TD

include "moec/Dialect/Moe/MoeDialect.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"

def Moe_QuantFormat : I32EnumAttr<"QuantFormat", "storage format of a quantized weight", [
    I32EnumAttrCase<"q8", 0>,
    I32EnumAttrCase<"q4", 1>,
    I32EnumAttrCase<"f8e4m3", 2>
  ]> {
  let cppNamespace = "::mlir::moe";
  let genSpecializedAttr = 0;
}

def Moe_QuantAttr : AttrDef<Moe_Dialect, "Quant"> {
  let mnemonic = "quant";
  let summary = "A weight's quantized storage: format and group size along K.";
  let description = [{
    A weight W[..., N, K] (N outputs, K the reduction axis) stored as data plus scales, with
    one scale per `group_size` consecutive elements of a row:

    * `q8`: data `i8` [..., N, K]; scales `f16` [..., N, K/32]; `w = q * s`. 8.5 bits/weight.
    * `q4`: data `i8` [..., N, K/2] read as unsigned bytes; scales `f16` [..., N, K/32]. In row
      n, group g occupies bytes [16g, 16g+16): byte j holds element 32g+j in its low nibble
      and element 32g+16+j in its high nibble; `w = (nibble - 8) * s`. 4.5 bits/weight. The
      scale is signed: `s = m / -8` for the group's element m of largest magnitude, so m
      takes code 0 and all 16 codes are used (a negative s is valid).
    * `f8e4m3`: data `f8E4M3FN` [..., N, K] as Hugging Face FP8 checkpoints store it; scales
      `f32` [..., N, 1], one per output channel (row); `w = f32(q) * s`. The group is the whole
      row, whatever K is, so the attribute has no `group_size` (it is stored as 0) and one
      attribute describes weights of different K, such as a sparse block's w1/w3 (K = hidden)
      and w2 (K = intermediate).

    ```mlir
    %y = moe.linear %x, %data scales %s {quant = #moe.quant<q4, group_size = 32>}
        : (tensor<?x4096xf32>, tensor<4096x2048xi8>, tensor<4096x128xf16>) -> tensor<?x4096xf32>
    %z = moe.linear %x, %f8 scales %t {quant = #moe.quant<f8e4m3>}
        : (tensor<?x4096xf32>, tensor<1024x4096xf8E4M3FN>, tensor<1024x1xf32>) -> tensor<?x1024xf32>
    ```
  }];
  let parameters = (ins EnumParameter<Moe_QuantFormat>:$format,
                        DefaultValuedParameter<"int64_t", "0">:$groupSize);
  let assemblyFormat = "`<` $format (`,` `group_size` `=` $groupSize^)? `>`";
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    /// Elements of K per byte of data: 2 for q4, 1 otherwise.
    int64_t elementsPerByte() const { return getFormat() == QuantFormat::q4 ? 2 : 1; }
    /// Elements per scale in a row of K elements: K for f8e4m3 (one scale per row), else
    /// the group size.
    int64_t groupSizeFor(int64_t k) const { return getGroupSize() == 0 ? k : getGroupSize(); }
    /// The element type of the data tensor.
    ::mlir::Type dataElementType(::mlir::MLIRContext *ctx) const;
    /// The element type of the scale tensor.
    ::mlir::Type scaleElementType(::mlir::MLIRContext *ctx) const;
  }];
}

def Moe_PanelsAttr : AttrDef<Moe_Dialect, "Panels"> {
  let mnemonic = "panels";
  let summary = "A float or q8 weight stored in the packed GEMM's panel order.";
  let description = [{
    A weight W[..., N, K] stored per panel of `cols` rows (N a multiple of `cols`, K of
    `lanes`) in the order the CPU GEMM's microkernel reads it: panel p, lane l < lanes, step
    j < K / lanes hold the `cols` rows' `W[p * cols + r, l + lanes * j]`, contiguous. As a
    tensor it is [..., N / cols, K, cols] with element `[p, l * (K / lanes) + j, r]`; the
    matmul reading it maps (m, n, k) to (n floordiv cols, (k mod lanes) * (K / lanes) +
    k floordiv lanes, n mod cols). `mixtral-compile --pack` writes the expert weights so on
    CPU targets (cols = 2 vectors, lanes = one vector of f32: 16 and 8 with AVX2), and the
    model builder marks their arena views `moe.panels`; `moe-lower-to-linalg` reads them
    through a `linalg.generic` marked with this attribute, and `moe-cpu-vectorize-matmul`
    turns that into its GEMM (the panel read in place, no per-call packing) or GEMV.

    q8 experts (f32 activations) may be stored so too (`mixtral-compile --quantize q8` on a
    CPU): the int8 codes in the order above, [..., N / cols, K, cols], and their f16 scales
    per panel and group, [..., N / cols, K / 32, cols] with element [p, g, r] the scale of
    group g of row p * cols + r. Both views carry the mark (next to `moe.quant`), the generic
    maps the scales by (n floordiv cols, k floordiv 32, n mod cols), and
    `moe-cpu-vectorize-quant-matmul` makes its panel GEMM (a stored panel dequantised without
    transposes) or panel GEMV of it.

    ```mlir
    %v = memref.view %arena[%off][] {moe.panels = #moe.panels<cols = 16, lanes = 8>}
        : memref<1048576xi8> to memref<8x64x32xbf16>
    ```
  }];
  let parameters = (ins "int64_t":$cols, "int64_t":$lanes);
  let assemblyFormat = "`<` `cols` `=` $cols `,` `lanes` `=` $lanes `>`";
  let genVerifyDecl = 1;
}

#endif // MOEC_DIALECT_MOE_MOEATTRS_TD
