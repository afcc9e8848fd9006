using System.Diagnostics.CodeAnalysis;

// "Loop" is a Visual Basic keyword; the library is consumed from C# only, and the folder names the feature.
[assembly: SuppressMessage("Naming", "CA1716:Identifiers should not match keywords", Scope = "namespace",
    Target = "~N:Cfn.Coordination.Loop", Justification = "C#-only library; the name says what the namespace holds.")]
