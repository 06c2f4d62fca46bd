// Launch floor of a decode step as hip-bench times it: one kernel captured in a CUDA graph, an event pair around
// each replay, median of 300 after warm-up. Grids and shared memory as the step kernel's (256 CTAs of 128 threads,
// clusters of 8, 45.6 KB static shared memory) and lighter forms.
#include <cstdio>
#include <vector>
#include <algorithm>
#include <cuda_runtime.h>
#include <cooperative_groups.h>
namespace cg = cooperative_groups;
template <int SMEM, bool BAR>
__global__ void k_empty(int* out) {
    __shared__ volatile char s[SMEM > 0 ? SMEM : 1];
    if (SMEM > 0 && threadIdx.x == 0) s[0] = 1;
    if (BAR) { cg::this_cluster().sync(); }
    if (out && threadIdx.x == 1000) out[0] = s[0];
}
// One dependent global round trip chain of n loads (L2-resident), to price a trip.
__global__ void k_chain(const int* __restrict__ a, int n, int* out) {
    int i = threadIdx.x;
    for (int j = 0; j < n; ++j) i = a[i & 4095];
    if (i == -12345) out[0] = i;
}
template <class F>
float med(F launch, cudaStream_t s) {
    cudaGraph_t g; cudaGraphExec_t ge;
    cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal);
    launch(s);
    cudaStreamEndCapture(s, &g);
    cudaGraphInstantiate(&ge, g, 0);
    for (int i = 0; i < 50; ++i) cudaGraphLaunch(ge, s);
    std::vector<cudaEvent_t> ev(600);
    for (auto& e : ev) cudaEventCreate(&e);
    for (int i = 0; i < 300; ++i) { cudaEventRecord(ev[2*i], s); cudaGraphLaunch(ge, s); cudaEventRecord(ev[2*i+1], s); }
    cudaStreamSynchronize(s);
    std::vector<float> t(300);
    for (int i = 0; i < 300; ++i) { cudaEventElapsedTime(&t[i], ev[2*i], ev[2*i+1]); t[i] *= 1000.f; }
    std::sort(t.begin(), t.end());
    for (auto& e : ev) cudaEventDestroy(e);
    cudaGraphExecDestroy(ge); cudaGraphDestroy(g);
    return t[150];
}
template <int SMEM, bool BAR>
void run(const char* name, int grid, int cl, cudaStream_t s) {
    auto f = k_empty<SMEM, BAR>;
    float us = med([&](cudaStream_t st) {
        cudaLaunchConfig_t c = {};
        c.gridDim = dim3(grid); c.blockDim = dim3(128); c.stream = st;
        cudaLaunchAttribute a[1];
        a[0].id = cudaLaunchAttributeClusterDimension; a[0].val.clusterDim.x = cl; a[0].val.clusterDim.y = 1; a[0].val.clusterDim.z = 1;
        c.attrs = a; c.numAttrs = cl > 1 ? 1 : 0;
        cudaLaunchKernelEx(&c, f, (int*)nullptr);
    }, s);
    printf("%-48s %7.2f us  (%s)\n", name, us, cudaGetErrorString(cudaGetLastError()));
}
int main() {
    cudaStream_t s; cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    run<0, false>("empty, 1 CTA", 1, 1, s);
    run<0, false>("empty, 256 CTAs", 256, 1, s);
    run<0, false>("empty, 256 CTAs, clusters of 8", 256, 8, s);
    run<45600, false>("45.6 KB smem, 256 CTAs, clusters of 8", 256, 8, s);
    run<45600, true>("45.6 KB smem, clusters of 8, cluster barrier", 256, 8, s);
    run<45600, false>("45.6 KB smem, 512 CTAs, clusters of 8", 512, 8, s);
    int* a; cudaMalloc(&a, 4096 * 4);
    std::vector<int> h(4096); for (int i = 0; i < 4096; ++i) h[i] = (i * 2654435761u) % 4096;
    cudaMemcpy(a, h.data(), 4096 * 4, cudaMemcpyHostToDevice);
    for (int n : {0, 4, 16, 64}) {
        float us = med([&](cudaStream_t st) { k_chain<<<256, 128, 0, st>>>(a, n, nullptr); }, s);
        printf("chain of %2d dependent L2 loads, 256 CTAs          %7.2f us\n", n, us);
    }
    return 0;
}
